/* asrgguf's greedy decode loop in C (libasrgguf_loop.so; asrgguf/decode_loop.py, docs/native.md).
 *
 * The steps of asrgguf/generate.py's Batcher.step, many in one call: for every active sequence take its
 * pending token (a stop token ends it, else it is appended; the token limit or the repetition guard end it),
 * then one llama_decode of one row per unfinished sequence, and the argmax of each row's logits (the first
 * maximum, as numpy's argmax; a NaN wins, the first one) becomes its next pending token. It returns to Python
 * after the step in which a sequence finished, after max_steps steps, after max_ns nanoseconds, when Python
 * sets *interrupt (checked between steps, after at least one), or when llama_decode fails.
 *
 * Only llama.h is used, and only two of its functions, called through pointers Python hands in (the very
 * functions of the libllama that llama-cpp-python loaded: no second libllama, no link-time dependency), so
 * the same library serves CPU, CUDA and Metal builds of llama.cpp. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"

#define API __attribute__((visibility("default")))
#define LOOP_VERSION 1

enum { SEQ_GOING = 0, SEQ_STOP = 1, SEQ_MAX_TOKENS = 2, SEQ_REPEATING = 3 };
enum { FLAG_EXACT = 1, FLAG_GUARD = 2 };
enum { END_FINISHED = 0, END_STEPS = 1, END_TIME = 2, END_INTERRUPT = 3, END_DECODE_FAILED = -1,
       END_NO_LOGITS = -2, END_NO_MEMORY = -3 };

typedef int32_t (*decode_fn)(struct llama_context *, struct llama_batch);
typedef float *(*logits_fn)(struct llama_context *, int32_t);

/* one active sequence (a generate.Job); the layout is mirrored by ctypes in asrgguf/decode_loop.py */
typedef struct asrgguf_loop_seq {
    int32_t seq_id;     /* its llama.cpp sequence */
    int32_t pos;        /* in/out: the position its pending token goes to */
    int32_t next;       /* in/out: the pending token (argmax of its last logits), not yet taken */
    int32_t n_ids;      /* in/out: tokens in ids (generated so far, prefix included) */
    int32_t cap;        /* capacity of ids (> n_ids, >= max_new) */
    int32_t max_new;    /* the token limit (max_new_tokens) */
    int32_t flags;      /* FLAG_EXACT: stop tokens ignored, no guard; FLAG_GUARD: the repetition guard */
    int32_t state;      /* out: SEQ_* */
    int32_t n_decoded;  /* out: decodes it took part in, this call */
    int32_t reserved;
    int64_t decode_ns;  /* out: wall time of those decodes (decode + argmax), this call */
    int32_t *ids;
} asrgguf_loop_seq;

typedef struct asrgguf_loop_args {
    void *decode;                 /* llama_decode */
    void *get_logits_ith;         /* llama_get_logits_ith */
    struct llama_context *ctx;
    const int32_t *stop_ids;
    const volatile int32_t *interrupt;   /* Python sets it to nonzero: return after the current step */
    int64_t max_ns;               /* time budget (0: none) */
    int32_t n_stop;
    int32_t n_vocab;
    int32_t n_pos;                /* position entries per row: 4 (qwen3vl M-RoPE, all equal), 1 (qwen3) */
    int32_t max_steps;            /* at most this many decodes (>= 1) */
    int32_t rep_min_count, rep_min_tokens, rep_max_ngram;   /* generate.REPEAT_* */
    /* out */
    int32_t end;                  /* END_* */
    int32_t steps;                /* llama_decode calls */
    int32_t rows;                 /* rows over those calls */
    int32_t decode_rc;            /* llama_decode's code when END_DECODE_FAILED */
    int32_t reserved;
    int64_t llama_ns;             /* wall time inside llama_decode (what the loop adds is the rest) */
} asrgguf_loop_args;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* generate.is_repeating: the ids end in one n-gram (n <= max_ngram) repeated max(min_count,
 * ceil(min_tokens / n)) times; the first n whose span is longer than the ids ends the search, as there */
static int is_repeating(const int32_t *ids, int32_t n_ids, const asrgguf_loop_args *a) {
    for (int32_t n = 1; n <= a->rep_max_ngram; n++) {
        int32_t need = (a->rep_min_tokens + n - 1) / n;
        int32_t reps = a->rep_min_count > need ? a->rep_min_count : need;
        int64_t span = (int64_t)n * reps;
        if (n_ids < span) break;
        const int32_t *tail = ids + (n_ids - span);
        int64_t i = n;
        while (i < span && tail[i] == tail[i - n]) i++;
        if (i == span) return 1;
    }
    return 0;
}

/* numpy's argmax of float32: the first maximum; with a NaN anywhere, the first NaN. Two passes: the maximum
 * and whether a NaN is present, then the first index equal to it (SSE2 on x86-64, plain C elsewhere). */
#if defined(__SSE2__)
#include <emmintrin.h>
static int32_t argmax(const float *x, int32_t n) {
    int32_t i = 0;
    __m128 m0 = _mm_set1_ps(-INFINITY), m1 = m0, u0 = _mm_setzero_ps(), u1 = u0;
    for (; i + 8 <= n; i += 8) {
        __m128 a = _mm_loadu_ps(x + i), b = _mm_loadu_ps(x + i + 4);
        m0 = _mm_max_ps(a, m0), m1 = _mm_max_ps(b, m1);   /* a NaN in a or b keeps m (second operand) */
        u0 = _mm_or_ps(u0, _mm_cmpunord_ps(a, a)), u1 = _mm_or_ps(u1, _mm_cmpunord_ps(b, b));
    }
    float mm[8];
    _mm_storeu_ps(mm, m0), _mm_storeu_ps(mm + 4, m1);
    int any_nan = _mm_movemask_ps(_mm_or_ps(u0, u1)) != 0;
    float best = -INFINITY;
    for (int j = 0; j < 8; j++) best = mm[j] > best ? mm[j] : best;
    for (; i < n; i++) {
        best = x[i] > best ? x[i] : best;
        any_nan |= x[i] != x[i];
    }
    const __m128 bv = _mm_set1_ps(best);
    for (i = 0; i + 4 <= n; i += 4) {
        __m128 a = _mm_loadu_ps(x + i);
        int hit = _mm_movemask_ps(any_nan ? _mm_cmpunord_ps(a, a) : _mm_cmpeq_ps(a, bv));
        if (hit) return i + __builtin_ctz(hit);
    }
    for (; i < n; i++)
        if (any_nan ? x[i] != x[i] : x[i] == best) return i;
    return 0;   /* n == 0 */
}
#else
static int32_t argmax(const float *x, int32_t n) {
    float best = -INFINITY;
    int any_nan = 0;
    for (int32_t i = 0; i < n; i++) {
        best = x[i] > best ? x[i] : best;
        any_nan |= x[i] != x[i];
    }
    for (int32_t i = 0; i < n; i++)
        if (any_nan ? x[i] != x[i] : x[i] == best) return i;
    return 0;   /* n == 0 */
}
#endif

API int asrgguf_loop_version(void) { return LOOP_VERSION; }

/* sizes Python checks against its ctypes mirrors before the first call */
API void asrgguf_loop_sizes(int32_t *out) {
    out[0] = (int32_t)sizeof(asrgguf_loop_seq);
    out[1] = (int32_t)sizeof(asrgguf_loop_args);
    out[2] = (int32_t)sizeof(struct llama_batch);
}

/* numpy-exact argmax, exposed for the tests */
API int32_t asrgguf_loop_argmax(const float *x, int32_t n) { return argmax(x, n); }

API int32_t asrgguf_loop_is_repeating(const int32_t *ids, int32_t n_ids, int32_t min_count, int32_t min_tokens,
                                      int32_t max_ngram) {
    asrgguf_loop_args a;
    memset(&a, 0, sizeof a);
    a.rep_min_count = min_count, a.rep_min_tokens = min_tokens, a.rep_max_ngram = max_ngram;
    return is_repeating(ids, n_ids, &a);
}

/* Runs greedy steps over seqs[0..n_seqs) (all SEQ_GOING on entry). Returns a->end. */
API int32_t asrgguf_loop_run(asrgguf_loop_args *a, asrgguf_loop_seq *seqs, int32_t n_seqs) {
    decode_fn decode = (decode_fn)a->decode;
    logits_fn logits = (logits_fn)a->get_logits_ith;
    const int64_t t_start = now_ns();
    a->steps = a->rows = a->decode_rc = 0;
    a->llama_ns = 0;
    a->end = END_FINISHED;
    int32_t n_pos = a->n_pos > 0 ? a->n_pos : 1;
    llama_token *token = malloc(sizeof(llama_token) * (n_seqs + 1));
    llama_pos *pos = malloc(sizeof(llama_pos) * (n_seqs + 1) * n_pos);
    int32_t *n_seq_id = malloc(sizeof(int32_t) * (n_seqs + 1));
    llama_seq_id *seq_store = malloc(sizeof(llama_seq_id) * (n_seqs + 1));
    llama_seq_id **seq_ptrs = malloc(sizeof(llama_seq_id *) * (n_seqs + 1));
    int8_t *out = malloc(n_seqs + 1);
    int32_t *going = malloc(sizeof(int32_t) * (n_seqs + 1));
    if (!token || !pos || !n_seq_id || !seq_store || !seq_ptrs || !out || !going) {
        a->end = END_NO_MEMORY;
        goto done;
    }
    for (int32_t i = 0; i < n_seqs; i++) {
        seqs[i].state = SEQ_GOING;
        seqs[i].n_decoded = 0;
        seqs[i].decode_ns = 0;
    }
    for (;;) {
        /* take each sequence's pending token (Batcher.step's first half) */
        int32_t n_go = 0, n_done = 0;
        for (int32_t i = 0; i < n_seqs; i++) {
            asrgguf_loop_seq *s = &seqs[i];
            if (s->state != SEQ_GOING) continue;
            int exact = s->flags & FLAG_EXACT;
            int stop = 0;
            for (int32_t k = 0; !exact && k < a->n_stop; k++) stop |= s->next == a->stop_ids[k];
            if (stop) {
                s->state = SEQ_STOP, n_done++;
                continue;
            }
            if (s->n_ids >= s->cap) {   /* cannot happen with cap >= max_new and > n_ids on entry */
                s->state = SEQ_MAX_TOKENS, n_done++;
                continue;
            }
            s->ids[s->n_ids++] = s->next;
            if (s->n_ids >= s->max_new)
                s->state = SEQ_MAX_TOKENS, n_done++;
            else if ((s->flags & FLAG_GUARD) && !exact && is_repeating(s->ids, s->n_ids, a))
                s->state = SEQ_REPEATING, n_done++;
            else
                going[n_go++] = i;
        }
        if (n_go > 0) {
            /* one row per unfinished sequence: its pending token at its position, every row's logits */
            const int64_t t0 = now_ns();
            for (int32_t r = 0; r < n_go; r++) {
                const asrgguf_loop_seq *s = &seqs[going[r]];
                token[r] = s->next;
                for (int32_t k = 0; k < n_pos; k++) pos[k * n_go + r] = s->pos;
                n_seq_id[r] = 1;
                seq_store[r] = s->seq_id;
                seq_ptrs[r] = &seq_store[r];
                out[r] = 1;
            }
            struct llama_batch b;
            memset(&b, 0, sizeof b);
            b.n_tokens = n_go, b.token = token, b.embd = NULL, b.pos = pos;
            b.n_seq_id = n_seq_id, b.seq_id = seq_ptrs, b.logits = out;
            const int64_t t1 = now_ns();
            int32_t rc = decode(a->ctx, b);
            a->llama_ns += now_ns() - t1;
            if (rc != 0) {
                a->decode_rc = rc;
                a->end = END_DECODE_FAILED;
                goto done;
            }
            for (int32_t r = 0; r < n_go; r++) {
                asrgguf_loop_seq *s = &seqs[going[r]];
                const float *lg = logits(a->ctx, r);
                if (!lg) {
                    a->end = END_NO_LOGITS;
                    goto done;
                }
                s->pos += 1;
                s->next = argmax(lg, a->n_vocab);
            }
            const int64_t dt = now_ns() - t0;
            for (int32_t r = 0; r < n_go; r++) {
                seqs[going[r]].n_decoded += 1;
                seqs[going[r]].decode_ns += dt;
            }
            a->steps += 1;
            a->rows += n_go;
        }
        if (n_done > 0 || n_go == 0) {
            a->end = END_FINISHED;
            break;
        }
        if (a->steps >= a->max_steps) {
            a->end = END_STEPS;
            break;
        }
        if (a->max_ns > 0 && now_ns() - t_start >= a->max_ns) {
            a->end = END_TIME;
            break;
        }
        if (a->interrupt && __atomic_load_n(a->interrupt, __ATOMIC_ACQUIRE)) {
            a->end = END_INTERRUPT;
            break;
        }
    }
done:
    free(token), free(pos), free(n_seq_id), free(seq_store), free(seq_ptrs), free(out), free(going);
    return a->end;
}
