// asrgguf's native ggml backend: q8_0 matrix products on x86 CPUs.
//
// A ggml backend of device type ACCEL, loaded at run time with ggml_backend_load() (GGML_BACKEND_DL
// style: the library exports ggml_backend_init). llama.cpp puts an ACCEL device's buffer type first
// when it places weights, so q8_0 weights used by MUL_MAT land in this backend's buffers, where
// set_tensor repacks them (same size) into groups of 16 rows:
//
//   group g (rows 16g..16g+15), superblock s (columns 64s..64s+63), 1088 bytes:
//     64 bytes   the 2 x 16 f16 scales (block 2s: rows 0..15, block 2s+1: rows 0..15)
//     2 x 512    per block, 8 chunks of 64 bytes: chunk j holds rows 0..15 x quants 4j..4j+3,
//                stored as unsigned bytes (q ^ 0x80 = q + 128)
//
// so one 64-byte load is 16 rows x 4 columns: the operand of one AVX-512 VNNI vpdpbusd (u8 x s8)
// against 4 activation bytes broadcast. The +128 bias of the weights is removed with the
// activation block's sum (128 * sum(qa)), so every block's integer dot product is exact and equal
// to llama.cpp's; activations are quantized to q8_0 exactly as llama.cpp's x86 quantize_row_q8_0.
// AVX2 path (no VNNI): the same layout through vpmaddubsw with the sign trick.
//
// The buffer type is a host buffer type: outputs of the products are plain f32 host memory that
// llama.cpp's CPU backend reads without copies. (Transparent huge pages for it were tried: decode
// 0-8 % faster, load up to 2.5 s slower on this VM at 1.7B, end to end no better; not kept.)
//
// Besides the products it takes the f32 norms, adds and SwiGLU between them, and a decode step's
// attention over llama.cpp's f16 KV cache (KQ, masked softmax, KQV, CONT), so a layer needs fewer graph
// splits and each KV head is read once for the query heads that share it.
//
// Threads: OpenMP, the same libgomp pool that llama.cpp's CPU backend uses (persistent, already spinning
// between graph splits), one parallel region per graph split (its nodes in order, barriers between them).

#include "ggml.h"
#include "ggml-backend.h"
#include "ggml-backend-impl.h"
#include "repack_cache.h"

#if !defined(__x86_64__) && !defined(_M_X64)
#error "asrgguf native: x86-64 only (AVX2 / AVX-512 VNNI kernels)"
#endif
#include <immintrin.h>
#include <omp.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <sys/mman.h>
#include <unistd.h>
#include <thread>
#include <vector>

#define ASRGGUF_NATIVE_VERSION "0.1.0"

namespace {

constexpr int QK = 32;          // q8_0 block: 32 quants
constexpr int QB = 34;          // q8_0 block bytes (f16 scale + 32 int8)
constexpr int GR = 16;          // rows per group
constexpr int SB = 1088;        // superblock bytes: 16 rows x 64 columns
constexpr int NCMAX = 8;        // activation columns per kernel call

enum Isa { ISA_NONE = 0, ISA_AVX2 = 1, ISA_AVX512VNNI = 2 };

struct Global {
    int detected = ISA_NONE;
    std::atomic<int> isa{ISA_NONE};
    std::atomic<long long> n_repacked{0};
    std::atomic<long long> bytes_repacked{0};
    std::atomic<long long> bytes_cached{0};  // of those, read from a repack cache file (not repacked again)
    std::atomic<long long> n_mul_mat{0};
    std::atomic<long long> n_graphs{0};
    std::atomic<long long> ns{0};  // wall time inside graph_compute
    std::atomic<int> accept{1};  // take new weights at model load (placement); loaded ones stay ours
    bool attention = true;       // decode attention over the f16 KV cache (ASRGGUF_NATIVE_NO_ATTENTION=1: no)
    bool elementwise = true;     // take the norms, adds and SwiGLU too (ASRGGUF_NATIVE_PRODUCTS_ONLY=1: no)
};

Global & G() {
    static Global g;
    return g;
}

char REPACKED_TAG;  // tensor->extra of a repacked weight

int detect_isa() {
    __builtin_cpu_init();
    const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool v512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    return v512 ? ISA_AVX512VNNI : avx2 ? ISA_AVX2 : ISA_NONE;
}

void init_global() {
    static bool done = false;
    if (done) return;
    done = true;
    Global & g = G();
    const char * f = getenv("ASRGGUF_NATIVE_ISA");
    // "none": behave as on a CPU without AVX2 + FMA (tests run that case on any machine)
    g.detected = (f && strcmp(f, "none") == 0) ? ISA_NONE : detect_isa();
    int isa = g.detected;
    if (f && strcmp(f, "avx2") == 0 && isa > ISA_AVX2) isa = ISA_AVX2;
    const char * p = getenv("ASRGGUF_NATIVE_PRODUCTS_ONLY");
    g.elementwise = !(p && *p && strcmp(p, "0") != 0);
    const char * na = getenv("ASRGGUF_NATIVE_NO_ATTENTION");
    g.attention = g.elementwise && !(na && *na && strcmp(na, "0") != 0);
    g.isa = isa;
}

inline float fp16_to_f32(const uint8_t * p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return ggml_fp16_to_fp32(h);
}

// ---------------------------------------------------------------------------------------------
// repacking

bool repackable_shape(const ggml_tensor * t) {
    return t->type == GGML_TYPE_Q8_0 && t->ne[2] == 1 && t->ne[3] == 1 && t->ne[1] % GR == 0 &&
           t->ne[0] % (2 * QK) == 0 && ggml_is_contiguous(t);
}

// group g (rows 16g..16g+15) of a weight of K columns
void repack_group(uint8_t * dst, const uint8_t * src, int64_t g, int64_t K) {
    const int64_t nb = K / QK, nsb = nb / 2, rowbytes = nb * QB;
    uint8_t * Gp = dst + g * GR * rowbytes;
    for (int64_t s = 0; s < nsb; ++s) {
        uint8_t * S = Gp + s * SB;
        for (int h = 0; h < 2; ++h) {
            const int64_t b = 2 * s + h;
            for (int r = 0; r < GR; ++r) {
                const uint8_t * blk = src + (g * GR + r) * rowbytes + b * QB;
                memcpy(S + h * 32 + r * 2, blk, 2);
                for (int j = 0; j < 8; ++j) {   // 4 quants at a time: a 16 x 8 transpose of 32-bit words
                    uint32_t w;
                    memcpy(&w, blk + 2 + 4 * j, 4);
                    w ^= 0x80808080u;
                    memcpy(S + 64 + h * 512 + j * 64 + r * 4, &w, 4);
                }
            }
        }
    }
}

void repack(uint8_t * dst, const uint8_t * src, int64_t M, int64_t K) {
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < M / GR; ++g) repack_group(dst, src, g, K);
}

void unpack(uint8_t * dst, const uint8_t * src, int64_t M, int64_t K) {
    const int64_t nb = K / QK, nsb = nb / 2, rowbytes = nb * QB;
    for (int64_t g = 0; g < M / GR; ++g) {
        const uint8_t * Gp = src + g * GR * rowbytes;
        for (int64_t s = 0; s < nsb; ++s) {
            const uint8_t * S = Gp + s * SB;
            for (int h = 0; h < 2; ++h) {
                const int64_t b = 2 * s + h;
                for (int r = 0; r < GR; ++r) {
                    uint8_t * blk = dst + (g * GR + r) * rowbytes + b * QB;
                    memcpy(blk, S + h * 32 + r * 2, 2);
                    for (int j = 0; j < 8; ++j)
                        for (int e = 0; e < 4; ++e)
                            blk[2 + 4 * j + e] = S[64 + h * 512 + j * 64 + r * 4 + e] ^ 0x80;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// activations -> q8_0 as llama.cpp's x86 quantize_row_q8_0: d = amax/127 stored as f16,
// q = round-half-even(x * (127/amax)); also 128 * sum(q) per block (removes the weights' +128)

void quantize_ref(const float * x, int64_t K, int8_t * q, float * d, int32_t * s) {
    for (int64_t b = 0; b < K / QK; ++b) {
        float amax = 0.0f;
        for (int k = 0; k < QK; ++k) amax = std::max(amax, std::fabs(x[b * QK + k]));
        const float dd = amax / 127.f;
        d[b] = ggml_fp16_to_fp32(ggml_fp32_to_fp16(dd));
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        int32_t sum = 0;
        for (int k = 0; k < QK; ++k) {
            const int v = (int) std::nearbyint(x[b * QK + k] * id);
            q[b * QK + k] = (int8_t) v;
            sum += v;
        }
        s[b] = 128 * sum;
    }
}

__attribute__((target("avx2,fma,f16c")))
void quantize_avx2(const float * x, int64_t K, int8_t * q, float * d, int32_t * s) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t b = 0; b < K / QK; ++b) {
        __m256 v[4];
        for (int i = 0; i < 4; ++i) v[i] = _mm256_loadu_ps(x + b * QK + 8 * i);
        __m256 m = _mm256_andnot_ps(sign, v[0]);
        for (int i = 1; i < 4; ++i) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
        __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        d[b] = _cvtsh_ss(_cvtss_sh(amax / 127.f, 0));
        const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
        __m256i iv[4];
        for (int i = 0; i < 4; ++i)
            iv[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_ROUND_NEAREST));
        const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(iv[0], iv[1]), _mm256_add_epi32(iv[2], iv[3]));
        __m128i s4 = _mm_add_epi32(_mm256_extracti128_si256(sum, 1), _mm256_castsi256_si128(sum));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        s[b] = 128 * _mm_cvtsi128_si32(s4);
        __m256i p0 = _mm256_packs_epi32(iv[0], iv[1]);
        __m256i p1 = _mm256_packs_epi32(iv[2], iv[3]);
        __m256i p = _mm256_packs_epi16(p0, p1);
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *) (q + b * QK), p);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
void quantize_avx512(const float * x, int64_t K, int8_t * q, float * d, int32_t * s) {
    for (int64_t b = 0; b < K / QK; ++b) {
        const __m512 v0 = _mm512_loadu_ps(x + b * QK), v1 = _mm512_loadu_ps(x + b * QK + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        d[b] = _cvtsh_ss(_cvtss_sh(amax / 127.f, 0));
        const __m512 id = _mm512_set1_ps(amax != 0.0f ? 127.f / amax : 0.0f);
        const __m512i i0 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m512i i1 = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        s[b] = 128 * _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
        _mm_storeu_si128((__m128i *) (q + b * QK), _mm512_cvtsepi32_epi8(i0));
        _mm_storeu_si128((__m128i *) (q + b * QK + 16), _mm512_cvtsepi32_epi8(i1));
    }
}

// ---------------------------------------------------------------------------------------------
// kernels: one group of 16 rows x NC activation columns, all K. qa/da/sa: column c at c*K, c*nb.

template <int NC>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,f16c,fma")))
void kern_avx512(const uint8_t * Gp, int64_t nb, const int8_t * qa, const float * da, const int32_t * sa,
                 int64_t K, float * const * out) {
    __m512 acc[NC];
    for (int c = 0; c < NC; ++c) acc[c] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t * S = Gp + (b >> 1) * SB;
        const int h = (int) (b & 1);
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (S + 32 * h)));
        const uint8_t * Q = S + 64 + 512 * h;
        __m512i w[8];
        for (int j = 0; j < 8; ++j) w[j] = _mm512_loadu_si512((const void *) (Q + 64 * j));
        for (int c = 0; c < NC; ++c) {
            const int32_t * a = (const int32_t *) (qa + c * K + b * QK);
            __m512i s0 = _mm512_set1_epi32(-sa[c * nb + b]);
            __m512i s1 = _mm512_setzero_si512();
            s0 = _mm512_dpbusd_epi32(s0, w[0], _mm512_set1_epi32(a[0]));
            s1 = _mm512_dpbusd_epi32(s1, w[1], _mm512_set1_epi32(a[1]));
            s0 = _mm512_dpbusd_epi32(s0, w[2], _mm512_set1_epi32(a[2]));
            s1 = _mm512_dpbusd_epi32(s1, w[3], _mm512_set1_epi32(a[3]));
            s0 = _mm512_dpbusd_epi32(s0, w[4], _mm512_set1_epi32(a[4]));
            s1 = _mm512_dpbusd_epi32(s1, w[5], _mm512_set1_epi32(a[5]));
            s0 = _mm512_dpbusd_epi32(s0, w[6], _mm512_set1_epi32(a[6]));
            s1 = _mm512_dpbusd_epi32(s1, w[7], _mm512_set1_epi32(a[7]));
            const __m512 f = _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1));
            acc[c] = _mm512_fmadd_ps(f, _mm512_mul_ps(dw, _mm512_set1_ps(da[c * nb + b])), acc[c]);
        }
    }
    for (int c = 0; c < NC; ++c) _mm512_storeu_ps(out[c], acc[c]);
}

// AVX2 (no VNNI): vpmaddubsw needs an unsigned operand and saturates its pair sums, so the weights' +128 is
// taken off again (xor) and the sign trick used: |w| (u8) x sign(a, w) (s8), pairs summed in i16 without
// saturation (|w| <= 128, |a| <= 127), then vpmaddwd by ones to i32. |w| and w are computed once per weight
// vector and reused for all NC columns; the two halves of the group (rows 0..7 and 8..15, the low and high
// 32 bytes of each 64-byte chunk) are done one after the other, so each column needs one i32 accumulator
// (NC <= 8 columns: 8 + 4 registers) and the weights come from memory once for all columns (the second
// half's bytes are in the same cache lines). The activations come interleaved (interleave_avx2): per
// block 8 columns x 8 groups of 4 quants, so every broadcast is at a constant offset from one pointer.
constexpr int AI_BLOCK = NCMAX * QK;   // interleaved activation bytes per block (8 columns)

template <int NC>
__attribute__((target("avx2,fma,f16c"), always_inline))
inline void avx2_half(const uint8_t * Q, const int8_t * p, __m256i * s) {
    const __m256i x80 = _mm256_set1_epi8((char) 0x80);
    const __m256i ones = _mm256_set1_epi16(1);
    __asm__ volatile("" : "+r"(p));   // opaque: GCC would hoist the broadcasts out of the halves' loop and spill them
    for (int c = 0; c < NC; ++c) s[c] = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
        const __m256i w = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *) (Q + 64 * j)), x80);
        const __m256i aw = _mm256_sign_epi8(w, w);
#pragma GCC unroll 8
        for (int c = 0; c < NC; ++c) {
            int32_t a4;
            memcpy(&a4, p + 4 * (NCMAX * j + c), 4);
            const __m256i av = _mm256_set1_epi32(a4);
            s[c] = _mm256_add_epi32(s[c], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(av, w)), ones));
            __asm__("" : "+x"(s[c]));   // keeps the sum a chain in a register (GCC's reassociation spilled a tree)
        }
    }
}

// qa, da: the interleaved chunk (interleave_avx2) of these NC columns; for NC = 1 the column's own (plain)
template <int NC>
__attribute__((target("avx2,fma,f16c")))
void kern_avx2(const uint8_t * Gp, int64_t nb, const int8_t * qa, const float * da, const int32_t * /*sa*/,
               int64_t /*K*/, float * const * out) {
    __m256 acc[2 * NC];
    for (int c = 0; c < 2 * NC; ++c) acc[c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t * S = Gp + (b >> 1) * SB;
        const int h = (int) (b & 1);
        const uint8_t * Q = S + 64 + 512 * h;
        if constexpr (NC == 1) {   // decode: both halves in one pass, each broadcast used twice; plain activations
            const int8_t * p = qa + b * QK;
            const __m256i x80 = _mm256_set1_epi8((char) 0x80);
            const __m256i ones = _mm256_set1_epi16(1);
            __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int j = 0; j < 8; ++j) {
                int32_t a4;
                memcpy(&a4, p + 4 * j, 4);
                const __m256i av = _mm256_set1_epi32(a4);
                const __m256i w0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *) (Q + 64 * j)), x80);
                const __m256i w1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *) (Q + 64 * j + 32)), x80);
                s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w0, w0),
                                                                                 _mm256_sign_epi8(av, w0)), ones));
                s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(w1, w1),
                                                                                 _mm256_sign_epi8(av, w1)), ones));
            }
            const __m256 d = _mm256_set1_ps(da[b]);
            acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0),
                                     _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (S + 32 * h))), d), acc[0]);
            acc[1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1),
                                     _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (S + 32 * h + 16))), d),
                                     acc[1]);
            continue;
        }
        const int8_t * p = qa + b * AI_BLOCK;
#pragma GCC unroll 1
        for (int half = 0; half < 2; ++half) {
            __m256i s[NC];
            avx2_half<NC>(Q + 32 * half, p, s);
            const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (S + 32 * h + 16 * half)));
#pragma GCC unroll 8
            for (int c = 0; c < NC; ++c)
                acc[2 * c + half] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[c]),
                                                    _mm256_mul_ps(dw, _mm256_set1_ps(da[b * NCMAX + c])), acc[2 * c + half]);
        }
    }
    for (int c = 0; c < NC; ++c) {
        _mm256_storeu_ps(out[c], acc[2 * c]);
        _mm256_storeu_ps(out[c] + 8, acc[2 * c + 1]);
    }
}

// column c's quants and scales into its chunk (c / 8) of the AVX2 kernels' interleaved copy: per block,
// for each group j of 4 quants, the 8 columns' 4 bytes side by side; the scales per block 8 columns wide
void interleave_avx2(const int8_t * q, const float * d, int64_t c, int64_t nb, int8_t * qi, float * di) {
    int8_t * Qc = qi + (c / NCMAX) * nb * AI_BLOCK + 4 * (c % NCMAX);
    float * Dc = di + (c / NCMAX) * nb * NCMAX + c % NCMAX;
    for (int64_t b = 0; b < nb; ++b) {
        for (int j = 0; j < 8; ++j) memcpy(Qc + b * AI_BLOCK + 4 * NCMAX * j, q + b * QK + 4 * j, 4);
        Dc[b * NCMAX] = d[b];
    }
}

using kern_t = void (*)(const uint8_t *, int64_t, const int8_t *, const float *, const int32_t *, int64_t,
                        float * const *);

kern_t pick(int isa, int nc) {
    static const kern_t t512[NCMAX + 1] = {nullptr, kern_avx512<1>, kern_avx512<2>, kern_avx512<3>, kern_avx512<4>,
                                           kern_avx512<5>, kern_avx512<6>, kern_avx512<7>, kern_avx512<8>};
    static const kern_t t256[NCMAX + 1] = {nullptr, kern_avx2<1>, kern_avx2<2>, kern_avx2<3>, kern_avx2<4>,
                                           kern_avx2<5>, kern_avx2<6>, kern_avx2<7>, kern_avx2<8>};
    return isa == ISA_AVX512VNNI ? t512[nc] : t256[nc];
}

int nc_max(int) { return NCMAX; }

// a q8_0 weight that was not repacked (standard layout), one row
float dot_plain(const uint8_t * row, int64_t nb, const int8_t * qa, const float * da) {
    float s = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
        const uint8_t * blk = row + b * QB;
        int32_t isum = 0;
        for (int k = 0; k < QK; ++k) isum += (int32_t) (int8_t) blk[2 + k] * qa[b * QK + k];
        s += fp16_to_f32(blk) * da[b] * (float) isum;
    }
    return s;
}

// ---------------------------------------------------------------------------------------------
// backend

struct Ctx {
    int n_threads = 0;
    std::vector<uint8_t> work;
};

struct Col {  // column c of a MUL_MAT (src1 / dst), over ne11 x ne12 x ne13
    const ggml_tensor * node;
    const float * src(int64_t c) const {
        const ggml_tensor * s1 = node->src[1];
        const int64_t i1 = c % s1->ne[1], i2 = (c / s1->ne[1]) % s1->ne[2], i3 = c / (s1->ne[1] * s1->ne[2]);
        return (const float *) ((const char *) s1->data + i1 * s1->nb[1] + i2 * s1->nb[2] + i3 * s1->nb[3]);
    }
    float * dst(int64_t c) const {
        const ggml_tensor * s1 = node->src[1];
        const int64_t i1 = c % s1->ne[1], i2 = (c / s1->ne[1]) % s1->ne[2], i3 = c / (s1->ne[1] * s1->ne[2]);
        return (float *) ((char *) node->data + i1 * node->nb[1] + i2 * node->nb[2] + i3 * node->nb[3]);
    }
};

size_t work_size(const ggml_tensor * node) {
    const ggml_tensor * s1 = node->src[1];
    const int64_t K = s1->ne[0], N = s1->ne[1] * s1->ne[2] * s1->ne[3], nb = K / QK;
    const int64_t chunks = (N + NCMAX - 1) / NCMAX;   // the AVX2 kernels' interleaved copy after it
    return (size_t) N * (K + nb * 8) + (size_t) chunks * nb * (AI_BLOCK + NCMAX * 4) + 64;
}

void run_mul_mat(const ggml_tensor * node, uint8_t * work, int isa, int ith, int nth, bool quantize) {
    const ggml_tensor * w = node->src[0];
    const ggml_tensor * s1 = node->src[1];
    const int64_t K = s1->ne[0], M = w->ne[1], N = s1->ne[1] * s1->ne[2] * s1->ne[3], nb = K / QK;
    int8_t * qa = (int8_t *) work;
    float * da = (float *) (work + N * K);
    int32_t * sa = (int32_t *) (work + N * K + N * nb * 4);
    const int64_t chunks = (N + NCMAX - 1) / NCMAX;
    int8_t * qi = (int8_t *) (work + N * (K + nb * 8));
    float * di = (float *) (work + N * (K + nb * 8) + chunks * nb * AI_BLOCK);
    const Col col{node};
    if (quantize) {  // (the caller has synchronized: src1 is complete)
        for (int64_t c = ith; c < N; c += nth) {
            if (isa == ISA_AVX512VNNI) {
                quantize_avx512(col.src(c), K, qa + c * K, da + c * nb, sa + c * nb);
            } else {
                quantize_avx2(col.src(c), K, qa + c * K, da + c * nb, sa + c * nb);
                if (N > 1) interleave_avx2(qa + c * K, da + c * nb, c, nb, qi, di);
            }
        }
        if (nth > 1) {
#pragma omp barrier
        }
    }
    const uint8_t * W = (const uint8_t *) w->data;
    if (w->extra != &REPACKED_TAG) {  // standard layout (not set whole): plain loop
        const int64_t rowbytes = nb * QB;
        for (int64_t m = ith; m < M; m += nth)
            for (int64_t c = 0; c < N; ++c) col.dst(c)[m] = dot_plain(W + m * rowbytes, nb, qa + c * K, da + c * nb);
        return;
    }
    const int64_t ng = M / GR, gbytes = GR * nb * QB;
    const int64_t g0 = ng * ith / nth, g1 = ng * (ith + 1) / nth;
    const int ncm = nc_max(isa);
    float * outs[NCMAX];
    for (int64_t g = g0; g < g1; ++g) {
        for (int64_t c0 = 0; c0 < N; c0 += ncm) {
            const int nc = (int) std::min<int64_t>(ncm, N - c0);
            for (int c = 0; c < nc; ++c) outs[c] = col.dst(c0 + c) + g * GR;
            if (isa == ISA_AVX512VNNI || nc == 1)
                pick(isa, nc)(W + g * gbytes, nb, qa + c0 * K, da + c0 * nb, sa + c0 * nb, K, outs);
            else   // the interleaved chunk c0 / 8 (c0 is a multiple of 8)
                pick(isa, nc)(W + g * gbytes, nb, qi + c0 / NCMAX * nb * AI_BLOCK, di + c0 / NCMAX * nb * NCMAX,
                              nullptr, K, outs);
        }
    }
}

bool is_my_buft(ggml_backend_buffer_type_t buft);

// --- the small f32 ops between the products (so that a layer needs fewer graph splits):
// RMS_NORM, MUL and ADD (src1 broadcast over rows), GLU SWIGLU with separate gate and up.
// Numerics as ggml's CPU ops: squares summed in double for RMS_NORM, silu(x) = x/(1+expf(-x)).

inline float * row_ptr(const ggml_tensor * t, int64_t i1, int64_t i2, int64_t i3) {
    return (float *) ((char *) t->data + i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3]);
}

void run_elementwise(const ggml_tensor * node, int ith, int nth) {
    const ggml_tensor * a = node->src[0];
    const ggml_tensor * b = node->src[1];
    const int64_t n = node->ne[0], r1 = node->ne[1], r2 = node->ne[2], rows = node->ne[1] * node->ne[2] * node->ne[3];
    for (int64_t r = ith; r < rows; r += nth) {
        const int64_t i1 = r % r1, i2 = (r / r1) % r2, i3 = r / (r1 * r2);
        const float * x = row_ptr(a, i1, i2, i3);
        float * y = row_ptr(node, i1, i2, i3);
        switch (node->op) {
            case GGML_OP_RMS_NORM: {
                float eps;
                memcpy(&eps, node->op_params, sizeof(float));
                double sum = 0.0;
                for (int64_t k = 0; k < n; ++k) sum += (double) (x[k] * x[k]);
                const float mean = (float) (sum / n);
                const float scale = 1.0f / sqrtf(mean + eps);
                for (int64_t k = 0; k < n; ++k) y[k] = x[k] * scale;
                break;
            }
            case GGML_OP_MUL:
            case GGML_OP_ADD: {
                const float * z = row_ptr(b, i1 % b->ne[1], i2 % b->ne[2], i3 % b->ne[3]);
                if (node->op == GGML_OP_MUL)
                    for (int64_t k = 0; k < n; ++k) y[k] = x[k] * z[k];
                else
                    for (int64_t k = 0; k < n; ++k) y[k] = x[k] + z[k];
                break;
            }
            case GGML_OP_GLU: {
                const float * g = row_ptr(b, i1, i2, i3);
                for (int64_t k = 0; k < n; ++k) y[k] = (x[k] / (1.0f + expf(-x[k]))) * g[k];
                break;
            }
            default:
                break;
        }
    }
}

bool f32_rows(const ggml_tensor * t) { return t && t->type == GGML_TYPE_F32 && t->nb[0] == sizeof(float); }

bool supported_elementwise(const ggml_tensor * op) {
    const ggml_tensor * a = op->src[0];
    const ggml_tensor * b = op->src[1];
    if (!f32_rows(op) || !f32_rows(a) || !ggml_are_same_shape(op, a)) return false;
    switch (op->op) {
        case GGML_OP_RMS_NORM:
            return true;
        case GGML_OP_MUL:
        case GGML_OP_ADD:
            if (!f32_rows(b) || b->ne[0] != a->ne[0]) return false;
            // per-head MULs (q_norm, k_norm: MUL(RMS_NORM(RESHAPE(product)))) sit between a CPU norm and a CPU rope: taking them
            // would only add splits. (Placement asks with an unallocated weight: accept it there; a
            // weight in our host buffer is used by the CPU backend just as well.)
            if (op->op == GGML_OP_MUL && b->data != nullptr && a->op == GGML_OP_RMS_NORM && a->src[0] &&
                (a->src[0]->op == GGML_OP_RESHAPE || a->src[0]->op == GGML_OP_VIEW))
                return false;
            for (int d = 1; d < 4; ++d)
                if (b->ne[d] != 1 && b->ne[d] != a->ne[d]) return false;
            return true;
        case GGML_OP_GLU:
            return op->op_params[0] == GGML_GLU_OP_SWIGLU && op->op_params[1] == 0 && f32_rows(b) &&
                   ggml_are_same_shape(a, b);
        default:
            return false;
    }
}

bool supported_mul_mat(const ggml_tensor * op) {
    const ggml_tensor * w = op->src[0];
    const ggml_tensor * s1 = op->src[1];
    return op->op == GGML_OP_MUL_MAT && w && s1 && w->buffer && is_my_buft(w->buffer->buft) &&
           repackable_shape(w) && s1->type == GGML_TYPE_F32 && s1->nb[0] == sizeof(float) &&
           op->type == GGML_TYPE_F32 && op->nb[0] == sizeof(float) && s1->ne[0] == w->ne[0];
}

// --- decode attention over llama.cpp's f16 KV cache (flash attention off, as asrgguf runs on the CPU):
// KQ = MUL_MAT(K view, q), SOFT_MAX(KQ, mask, scale), KQV = MUL_MAT(V^T view, softmax), CONT of the
// permuted KQV. With these the attention of a decode step joins the output product after it in one graph
// split, and each KV head is read once for all the query heads that share it (GQA): ggml's CPU mul_mat
// reads it once per query head. Numerics as ggml's CPU ops: the f32 operand is rounded to f16 (ggml
// converts it to the f16 vec_dot type), f16 x f16 products are exact in f32 and summed in f32; softmax
// x*scale + mask, max subtracted, exp summed in double. Only batches of up to ATTN_MAX_ROWS tokens per
// sequence (decode steps): prefill attention is a large matrix product that llama.cpp's CPU backend does well.

constexpr int64_t ATTN_MAX_ROWS = 8;
constexpr int F16_MAX_B = 8;   // f32 rows per pass of the f16 kernels

int64_t n_rows(const ggml_tensor * t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

bool weight_buffer(const ggml_tensor * t) {
    const ggml_backend_buffer_t b = t->view_src ? t->view_src->buffer : t->buffer;
    return b && b->usage == GGML_BACKEND_BUFFER_USAGE_WEIGHTS;
}

bool supported_f16_mul_mat(const ggml_tensor * op) {
    const ggml_tensor * a = op->src[0];
    const ggml_tensor * b = op->src[1];
    return op->op == GGML_OP_MUL_MAT && a && b && a->type == GGML_TYPE_F16 && a->nb[0] == 2 &&
           b->type == GGML_TYPE_F32 && b->nb[0] == sizeof(float) && op->type == GGML_TYPE_F32 &&
           op->nb[0] == sizeof(float) && a->ne[0] == b->ne[0] && b->ne[1] <= ATTN_MAX_ROWS &&
           b->ne[2] % a->ne[2] == 0 && b->ne[3] % a->ne[3] == 0 && !weight_buffer(a) &&
           !(a->buffer && is_my_buft(a->buffer->buft));
}

bool supported_soft_max(const ggml_tensor * op) {
    const ggml_tensor * a = op->src[0];
    const ggml_tensor * m = op->src[1];
    float max_bias;
    memcpy(&max_bias, (const float *) op->op_params + 1, sizeof(float));
    return op->op == GGML_OP_SOFT_MAX && f32_rows(op) && f32_rows(a) && ggml_are_same_shape(op, a) &&
           a->ne[1] <= ATTN_MAX_ROWS && op->src[2] == nullptr && max_bias == 0.0f &&
           (m == nullptr || (f32_rows(m) && m->ne[0] == a->ne[0] && m->ne[1] >= a->ne[1]));
}

bool supported_cont(const ggml_tensor * op) {
    const ggml_tensor * a = op->src[0];
    return op->op == GGML_OP_CONT && a && a->type == GGML_TYPE_F32 && op->type == GGML_TYPE_F32 &&
           n_rows(op) <= ATTN_MAX_ROWS && n_rows(a) <= 64 * ATTN_MAX_ROWS;
}

size_t f16_work_size(const ggml_tensor * node) {
    const ggml_tensor * b = node->src[1];
    return (size_t) n_rows(b) * b->ne[0] * sizeof(float) + 64;
}

template <int NB>
__attribute__((target("avx512f,avx512bw,avx512vl,f16c,fma")))
void dot_f16_avx512(const uint16_t * a, const float * const * b, int64_t K, float * out) {
    __m512 acc0[NB], acc1[NB];
    for (int j = 0; j < NB; ++j) acc0[j] = acc1[j] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        const __m512 a0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (a + k)));
        const __m512 a1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (a + k + 16)));
        for (int j = 0; j < NB; ++j) {
            acc0[j] = _mm512_fmadd_ps(a0, _mm512_loadu_ps(b[j] + k), acc0[j]);
            acc1[j] = _mm512_fmadd_ps(a1, _mm512_loadu_ps(b[j] + k + 16), acc1[j]);
        }
    }
    for (; k < K; k += 16) {
        const int64_t n = std::min<int64_t>(16, K - k);
        const __mmask16 m = (__mmask16) ((1u << n) - 1);
        const __m512 a0 = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, a + k));
        for (int j = 0; j < NB; ++j) acc0[j] = _mm512_fmadd_ps(a0, _mm512_maskz_loadu_ps(m, b[j] + k), acc0[j]);
    }
    for (int j = 0; j < NB; ++j) out[j] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[j], acc1[j]));
}

template <int NB>
__attribute__((target("avx2,fma,f16c")))
void dot_f16_avx2(const uint16_t * a, const float * const * b, int64_t K, float * out) {
    __m256 acc0[NB], acc1[NB];
    for (int j = 0; j < NB; ++j) acc0[j] = acc1[j] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        const __m256 a0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (a + k)));
        const __m256 a1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) (a + k + 8)));
        for (int j = 0; j < NB; ++j) {
            acc0[j] = _mm256_fmadd_ps(a0, _mm256_loadu_ps(b[j] + k), acc0[j]);
            acc1[j] = _mm256_fmadd_ps(a1, _mm256_loadu_ps(b[j] + k + 8), acc1[j]);
        }
    }
    for (int j = 0; j < NB; ++j) {
        const __m256 s = _mm256_add_ps(acc0[j], acc1[j]);
        __m128 s4 = _mm_add_ps(_mm256_extractf128_ps(s, 1), _mm256_castps256_ps128(s));
        s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
        float t = _mm_cvtss_f32(s4);
        for (int64_t kk = k; kk < K; ++kk) t += _cvtsh_ss(a[kk]) * b[j][kk];
        out[j] = t;
    }
}

using dot_f16_t = void (*)(const uint16_t *, const float * const *, int64_t, float *);

dot_f16_t pick_f16(int isa, int nb) {
    static const dot_f16_t t512[F16_MAX_B + 1] = {nullptr, dot_f16_avx512<1>, dot_f16_avx512<2>, dot_f16_avx512<3>,
                                                  dot_f16_avx512<4>, dot_f16_avx512<5>, dot_f16_avx512<6>,
                                                  dot_f16_avx512<7>, dot_f16_avx512<8>};
    static const dot_f16_t t256[F16_MAX_B + 1] = {nullptr, dot_f16_avx2<1>, dot_f16_avx2<2>, dot_f16_avx2<3>,
                                                  dot_f16_avx2<4>, dot_f16_avx2<5>, dot_f16_avx2<6>,
                                                  dot_f16_avx2<7>, dot_f16_avx2<8>};
    return isa == ISA_AVX512VNNI ? t512[nb] : t256[nb];
}

__attribute__((target("avx512f,avx512bw,avx512vl,f16c")))
void round_f16_avx512(const float * x, float * y, int64_t K) {
    int64_t k = 0;
    for (; k + 16 <= K; k += 16)
        _mm512_storeu_ps(y + k, _mm512_cvtph_ps(_mm512_cvtps_ph(_mm512_loadu_ps(x + k), _MM_FROUND_TO_NEAREST_INT)));
    for (; k < K; ++k) y[k] = _cvtsh_ss(_cvtss_sh(x[k], 0));
}

__attribute__((target("avx2,f16c")))
void round_f16_avx2(const float * x, float * y, int64_t K) {
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        _mm256_storeu_ps(y + k, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + k), _MM_FROUND_TO_NEAREST_INT)));
    for (; k < K; ++k) y[k] = _cvtsh_ss(_cvtss_sh(x[k], 0));
}

// dst[i0, i1, i2, i3] = sum_k a[k, i0, i2 / r2, i3 / r3] * f16(b[k, i1, i2, i3]); each row of a (one KV
// position of one head, or one channel of V^T) is read once for the r2 * r3 * ne11 rows of b that use it.
// Threads take contiguous ranges of i0 (KV positions for KQ: a position's heads are adjacent in the cache,
// so a thread streams whole cache rows), all heads each.
void run_mul_mat_f16(const ggml_tensor * node, uint8_t * work, int isa, int ith, int nth) {
    const ggml_tensor * a = node->src[0];
    const ggml_tensor * b = node->src[1];
    const int64_t K = a->ne[0], ne11 = b->ne[1], ne12 = b->ne[2];
    const int64_t ne01 = a->ne[1], nh = a->ne[2] * a->ne[3];
    const int64_t r2 = b->ne[2] / a->ne[2], r3 = b->ne[3] / a->ne[3];
    float * bw = (float *) work;   // b rounded to f16 precision, row i1 + ne11 * (i2 + ne12 * i3)
    const int64_t nbr = n_rows(b);
    for (int64_t r = ith; r < nbr; r += nth) {
        const float * x = row_ptr(b, r % ne11, (r / ne11) % ne12, r / (ne11 * ne12));
        if (isa == ISA_AVX512VNNI)
            round_f16_avx512(x, bw + r * K, K);
        else
            round_f16_avx2(x, bw + r * K, K);
    }
    if (nth > 1) {
#pragma omp barrier
    }
    const int64_t group = r2 * r3 * ne11;   // rows of b per row of a
    // per head h = i02 + ne02 * i03: a's offset, the rows of b and the dst bases (i0 = 0)
    thread_local std::vector<const float *> brows;   // reused from call to call: no allocation per product
    thread_local std::vector<char *> dbase;
    thread_local std::vector<const char *> abase;
    brows.resize(nh * group);
    dbase.resize(nh * group);
    abase.resize(nh);
    for (int64_t h = 0; h < nh; ++h) {
        const int64_t i02 = h % a->ne[2], i03 = h / a->ne[2];
        abase[h] = (const char *) a->data + i02 * a->nb[2] + i03 * a->nb[3];
        for (int64_t g = 0; g < group; ++g) {
            const int64_t i1 = g % ne11, i2 = i02 * r2 + (g / ne11) % r2, i3 = i03 * r3 + g / (ne11 * r2);
            brows[h * group + g] = bw + (i1 + ne11 * (i2 + ne12 * i3)) * K;
            dbase[h * group + g] = (char *) node->data + i1 * node->nb[1] + i2 * node->nb[2] + i3 * node->nb[3];
        }
    }
    const int64_t i0a = ne01 * ith / nth, i0b = ne01 * (ith + 1) / nth;
    const size_t nb0 = node->nb[0], anb1 = a->nb[1];
    float res[F16_MAX_B];
    // KQ (a head's row within a position's cache row): positions outer, so a thread streams whole cache rows;
    // KQV (V^T: a head's channels are long rows): heads outer, so the head's rows of b stay in L1
    const bool pos_outer = a->nb[2] < a->nb[1];
    for (int64_t g0 = 0; g0 < group; g0 += F16_MAX_B) {
        const int n = (int) std::min<int64_t>(F16_MAX_B, group - g0);
        const dot_f16_t dot = pick_f16(isa, n);
        const size_t rowbytes = (size_t) K * 2;
        auto prefetch = [&](int64_t i, int64_t h) {
            const char * q = abase[h] + i * anb1;
            for (size_t o = 0; o < rowbytes; o += 64) _mm_prefetch(q + o, _MM_HINT_T0);
        };
        auto one = [&](int64_t i, int64_t h) {
            dot((const uint16_t *) (abase[h] + i * anb1), brows.data() + h * group + g0, K, res);
            char * const * d = dbase.data() + h * group + g0;
            for (int j = 0; j < n; ++j) *(float *) (d[j] + i * nb0) = res[j];
        };
        constexpr int64_t PD = 2;   // rows ahead: the hardware prefetchers alone left these loads waiting on DRAM
        if (pos_outer)
            for (int64_t i = i0a; i < i0b; ++i) {
                if (i + PD < i0b) for (int64_t h = 0; h < nh; ++h) prefetch(i + PD, h);
                for (int64_t h = 0; h < nh; ++h) one(i, h);
            }
        else
            for (int64_t h = 0; h < nh; ++h)
                for (int64_t i = i0a; i < i0b; ++i) {
                    if (i + PD < i0b) prefetch(i + PD, h);
                    one(i, h);
                }
    }
}

// exp(x) for x <= 0 (x - max of a softmax row): Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, e^r by its
// degree-6 Taylor polynomial (relative error about 1e-7, like expf's ulp), times 2^n; 0 below -87 (-inf
// too); NaN stays NaN (a row that is all -inf gives NaN, as ggml's softmax)
__attribute__((target("avx512f")))
inline __m512 exp_neg_avx512(__m512 x) {
    const __mmask16 tiny = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.0f), _CMP_LT_OQ);
    x = _mm512_max_ps(_mm512_set1_ps(-87.0f), x);   // (max returns its second operand for a NaN)
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
    __m512 p = _mm512_set1_ps(1.0f / 720);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_maskz_mov_ps((__mmask16) ~tiny, _mm512_scalef_ps(p, n));
}

__attribute__((target("avx2,fma")))
inline __m256 exp_neg_avx2(__m256 x) {
    const __m256 tiny = _mm256_cmp_ps(x, _mm256_set1_ps(-87.0f), _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_set1_ps(-87.0f), x);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(tiny, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

// one softmax row in place: y = x * scale + mask, then exp(y - max) / sum (sum in double, as ggml)
__attribute__((target("avx512f")))
void soft_max_row_avx512(const float * x, const float * mk, float * y, int64_t n, float scale) {
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + k), _mm512_set1_ps(scale));
        if (mk) v = _mm512_add_ps(v, _mm512_loadu_ps(mk + k));
        _mm512_storeu_ps(y + k, v);
        vmax = _mm512_max_ps(vmax, v);
    }
    float mx = _mm512_reduce_max_ps(vmax);
    for (; k < n; ++k) {
        y[k] = x[k] * scale + (mk ? mk[k] : 0.0f);
        mx = std::max(mx, y[k]);
    }
    double sum = 0.0;
    k = 0;
    for (; k + 16 <= n; k += 16) {
        const __m512 e = exp_neg_avx512(_mm512_sub_ps(_mm512_loadu_ps(y + k), _mm512_set1_ps(mx)));
        _mm512_storeu_ps(y + k, e);
        sum += (double) _mm512_reduce_add_ps(e);   // each vector's sum into the double, as ggml's
    }
    for (; k < n; ++k) {
        y[k] = expf(y[k] - mx);
        sum += y[k];
    }
    const float inv = (float) (1.0 / sum);
    for (k = 0; k + 16 <= n; k += 16) _mm512_storeu_ps(y + k, _mm512_mul_ps(_mm512_loadu_ps(y + k), _mm512_set1_ps(inv)));
    for (; k < n; ++k) y[k] *= inv;
}

__attribute__((target("avx2,fma")))
void soft_max_row_avx2(const float * x, const float * mk, float * y, int64_t n, float scale) {
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) {
        __m256 v = _mm256_mul_ps(_mm256_loadu_ps(x + k), _mm256_set1_ps(scale));
        if (mk) v = _mm256_add_ps(v, _mm256_loadu_ps(mk + k));
        _mm256_storeu_ps(y + k, v);
        vmax = _mm256_max_ps(vmax, v);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, vmax);
    float mx = -INFINITY;
    for (float l : lanes) mx = std::max(mx, l);
    for (; k < n; ++k) {
        y[k] = x[k] * scale + (mk ? mk[k] : 0.0f);
        mx = std::max(mx, y[k]);
    }
    double sum = 0.0;
    k = 0;
    for (; k + 8 <= n; k += 8) {
        const __m256 e = exp_neg_avx2(_mm256_sub_ps(_mm256_loadu_ps(y + k), _mm256_set1_ps(mx)));
        _mm256_storeu_ps(y + k, e);
        __m128 s4 = _mm_add_ps(_mm256_extractf128_ps(e, 1), _mm256_castps256_ps128(e));
        s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        sum += (double) _mm_cvtss_f32(_mm_add_ss(s4, _mm_movehdup_ps(s4)));
    }
    for (; k < n; ++k) {
        y[k] = expf(y[k] - mx);
        sum += y[k];
    }
    const float inv = (float) (1.0 / sum);
    for (k = 0; k + 8 <= n; k += 8) _mm256_storeu_ps(y + k, _mm256_mul_ps(_mm256_loadu_ps(y + k), _mm256_set1_ps(inv)));
    for (; k < n; ++k) y[k] *= inv;
}

void run_soft_max(const ggml_tensor * node, int isa, int ith, int nth) {
    const ggml_tensor * a = node->src[0];
    const ggml_tensor * m = node->src[1];
    float scale;
    memcpy(&scale, node->op_params, sizeof(float));
    const int64_t n = a->ne[0], rows = n_rows(a);
    for (int64_t r = ith; r < rows; r += nth) {
        const int64_t i1 = r % a->ne[1], i2 = (r / a->ne[1]) % a->ne[2], i3 = r / (a->ne[1] * a->ne[2]);
        const float * mk = m ? row_ptr(m, i1, i2 % m->ne[2], i3 % m->ne[3]) : nullptr;
        if (isa == ISA_AVX512VNNI)
            soft_max_row_avx512(row_ptr(a, i1, i2, i3), mk, row_ptr(node, i1, i2, i3), n, scale);
        else
            soft_max_row_avx2(row_ptr(a, i1, i2, i3), mk, row_ptr(node, i1, i2, i3), n, scale);
    }
}

// CONT: the elements of a (any strides) in its logical order into the contiguous node (any shape of the
// same element count, as ggml_cont_2d makes)
void run_cont(const ggml_tensor * node, int ith, int nth) {
    const ggml_tensor * a = node->src[0];
    const int64_t rows = n_rows(a), n = a->ne[0];
    float * y = (float *) node->data;
    for (int64_t r = ith; r < rows; r += nth) {
        const int64_t i1 = r % a->ne[1], i2 = (r / a->ne[1]) % a->ne[2], i3 = r / (a->ne[1] * a->ne[2]);
        const char * x = (const char *) a->data + i1 * a->nb[1] + i2 * a->nb[2] + i3 * a->nb[3];
        for (int64_t k = 0; k < n; ++k) y[r * n + k] = *(const float *) (x + k * a->nb[0]);
    }
}

const char * backend_get_name(ggml_backend_t) { return "ASRGGUF"; }

void backend_free(ggml_backend_t backend) {
    delete (Ctx *) backend->context;
    delete backend;
}

enum ggml_status backend_graph_compute(ggml_backend_t backend, struct ggml_cgraph * cgraph) {
    Ctx * ctx = (Ctx *) backend->context;
    const int isa = G().isa.load();
    std::vector<ggml_tensor *> nodes;
    size_t wsize = 0;
    long long n_mm = 0;
    for (int i = 0; i < ggml_graph_n_nodes(cgraph); ++i) {
        ggml_tensor * node = ggml_graph_node(cgraph, i);
        if ((node->flags & GGML_TENSOR_FLAG_COMPUTE) == 0) continue;
        switch (node->op) {
            case GGML_OP_MUL_MAT:
                nodes.push_back(node);
                wsize = std::max(wsize, node->src[0]->type == GGML_TYPE_F16 ? f16_work_size(node) : work_size(node));
                n_mm++;
                break;
            case GGML_OP_RMS_NORM:
            case GGML_OP_MUL:
            case GGML_OP_ADD:
            case GGML_OP_GLU:
            case GGML_OP_SOFT_MAX:
            case GGML_OP_CONT:
                nodes.push_back(node);
                break;
            case GGML_OP_NONE:
            case GGML_OP_RESHAPE:
            case GGML_OP_VIEW:
            case GGML_OP_PERMUTE:
            case GGML_OP_TRANSPOSE:
                break;
            default:
                fprintf(stderr, "asrgguf native: unsupported op %s\n", ggml_op_desc(node));
                return GGML_STATUS_FAILED;
        }
    }
    if (nodes.empty()) return GGML_STATUS_SUCCESS;
    if (ctx->work.size() < wsize) ctx->work.resize(wsize);
    uint8_t * work = ctx->work.data();
    int nth = ctx->n_threads > 0 ? ctx->n_threads : (int) std::thread::hardware_concurrency();
    if (nth < 1) nth = 1;
    G().n_graphs++;
    G().n_mul_mat += n_mm;
    const auto t0 = std::chrono::steady_clock::now();
    auto body = [&](int ith, int nt) {
        for (size_t i = 0; i < nodes.size(); ++i) {
            ggml_tensor * node = nodes[i];
            // products of the same activations one after the other (K and V, gate and up): quantized once,
            // and independent of each other; anything else waits for the nodes before it
            const bool q8 = node->op == GGML_OP_MUL_MAT && node->src[0]->type != GGML_TYPE_F16;
            const bool shared = i > 0 && q8 && nodes[i - 1]->op == GGML_OP_MUL_MAT &&
                                nodes[i - 1]->src[0]->type != GGML_TYPE_F16 && nodes[i - 1]->src[1] == node->src[1];
            if (i > 0 && !shared && nt > 1) {
#pragma omp barrier
            }
            if (q8)
                run_mul_mat(node, work, isa, ith, nt, !shared);
            else if (node->op == GGML_OP_MUL_MAT)
                run_mul_mat_f16(node, work, isa, ith, nt);
            else if (node->op == GGML_OP_SOFT_MAX)
                run_soft_max(node, isa, ith, nt);
            else if (node->op == GGML_OP_CONT)
                run_cont(node, ith, nt);
            else
                run_elementwise(node, ith, nt);
        }
    };
    if (nth == 1) {
        body(0, 1);
    } else {
#pragma omp parallel num_threads(nth)
        body(omp_get_thread_num(), omp_get_num_threads());
    }
    G().ns += std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0).count();
    return GGML_STATUS_SUCCESS;
}

void set_n_threads(ggml_backend_t backend, int n_threads) { ((Ctx *) backend->context)->n_threads = n_threads; }

ggml_guid_t backend_guid() {
    static ggml_guid guid = {0x61, 0x73, 0x72, 0x67, 0x67, 0x75, 0x66, 0x2d, 0x6e, 0x61, 0x74, 0x69, 0x76, 0x65, 0x00, 0x01};
    return &guid;
}

const ggml_backend_i backend_iface = {
    /* .get_name            = */ backend_get_name,
    /* .free                = */ backend_free,
    /* .set_tensor_async    = */ nullptr,
    /* .get_tensor_async    = */ nullptr,
    /* .set_tensor_2d_async = */ nullptr,
    /* .get_tensor_2d_async = */ nullptr,
    /* .cpy_tensor_async    = */ nullptr,
    /* .synchronize         = */ nullptr,
    /* .graph_plan_create   = */ nullptr,
    /* .graph_plan_free     = */ nullptr,
    /* .graph_plan_update   = */ nullptr,
    /* .graph_plan_compute  = */ nullptr,
    /* .graph_compute       = */ backend_graph_compute,
    /* .event_record        = */ nullptr,
    /* .event_wait          = */ nullptr,
    /* .graph_optimize      = */ nullptr,
};

// --- buffer

struct Buf {
    uint8_t * data;
    size_t size;
    bool mapped;  // a repack cache file's private mapping (repack_cache.h), else aligned_alloc'd
};

// the repacked weights in this backend's buffers, for reading them back by name (asrgguf_native_read_weight)
std::mutex g_weights_mu;
std::vector<const ggml_tensor *> g_weights;

void note_weight(const ggml_tensor * t) {
    std::lock_guard<std::mutex> lk(g_weights_mu);
    g_weights.push_back(t);
}

void buf_free(ggml_backend_buffer_t buffer) {
    {
        std::lock_guard<std::mutex> lk(g_weights_mu);
        std::vector<const ggml_tensor *> keep;
        for (const ggml_tensor * t : g_weights)
            if (t->buffer != buffer) keep.push_back(t);
        g_weights.swap(keep);
    }
    Buf * b = (Buf *) buffer->context;
    repack_cache::unbind(b->data);
    if (b->mapped)
        munmap(b->data, b->size);
    else
        free(b->data);
    delete b;
}

void * buf_get_base(ggml_backend_buffer_t buffer) { return ((Buf *) buffer->context)->data; }

void buf_memset_tensor(ggml_backend_buffer_t, ggml_tensor * t, uint8_t value, size_t offset, size_t size) {
    if (t->extra == &REPACKED_TAG) t->extra = nullptr;
    memset((char *) t->data + offset, value, size);
}

// No second copy of a weight: llama.cpp hands set_tensor the weight's bytes straight from its mmap of the
// GGUF, and once they are repacked here the process would keep both (the mapping's resident pages count in
// its RSS until llama.cpp unmaps them, which it never does for tensors between its own mapped ones). So the
// whole pages of the source range are dropped from the mapping after the repack (MADV_DONTNEED), only when
// they lie in a read-only file mapping: a later read faults them in again from the file (the page cache
// keeps them as the kernel sees fit, outside this process's RSS), nothing is lost. A source in anonymous or
// writable memory (llama.cpp loading without mmap, a test's own array) is never touched.
// ASRGGUF_NATIVE_KEEP_SOURCE=1 keeps the pages (for measuring).
std::atomic<long long> g_released_bytes{0};

bool keep_source() {
    static const bool keep = [] {
        const char * k = getenv("ASRGGUF_NATIVE_KEEP_SOURCE");
        return k && *k && strcmp(k, "0") != 0;
    }();
    return keep;
}

// [lo, hi) lies inside one mapping of /proc/self/maps that is a file (inode != 0), readable, not writable
bool in_readonly_file_mapping(uintptr_t lo, uintptr_t hi) {
    FILE * f = fopen("/proc/self/maps", "re");
    if (!f) return false;
    char line[4096];
    bool ok = false;
    while (fgets(line, sizeof line, f)) {
        unsigned long long a = 0, b = 0, off = 0, inode = 0;
        char perms[8] = {0}, dev[32] = {0};
        if (sscanf(line, "%llx-%llx %7s %llx %31s %llu", &a, &b, perms, &off, dev, &inode) != 6) continue;
        if (a <= lo && hi <= b) {
            ok = inode != 0 && perms[0] == 'r' && perms[1] != 'w';
            break;
        }
    }
    fclose(f);
    return ok;
}

void release_source(const void * data, size_t size) {
    if (keep_source()) return;
    const uintptr_t page = (uintptr_t) sysconf(_SC_PAGESIZE);
    const uintptr_t lo = ((uintptr_t) data + page - 1) & ~(page - 1);  // whole pages inside the range only
    const uintptr_t hi = ((uintptr_t) data + size) & ~(page - 1);
    if (hi <= lo || !in_readonly_file_mapping(lo, hi)) return;
    if (madvise((void *) lo, hi - lo, MADV_DONTNEED) == 0) g_released_bytes += (long long) (hi - lo);
}

// a weight of a mapped repack cache equals what set_tensor would write: its chunks pass their checksums and
// its first and last 16-row groups repack from the GGUF's bytes to the cache's (a plain weight: all bytes)
bool cached_equal(const Buf * b, const ggml_tensor * t, const void * data, size_t offset, size_t size, bool repacked) {
    uint8_t * dst = (uint8_t *) t->data + offset;
    if (!repack_cache::verify((size_t) (dst - b->data), size)) return false;
    if (!repacked) return memcmp(dst, data, size) == 0;
    const int64_t K = t->ne[0], ng = t->ne[1] / GR, gbytes = GR * (K / QK) * QB;
    std::vector<uint8_t> tmp(gbytes);
    for (int64_t g : {(int64_t) 0, ng - 1}) {   // serial: no OpenMP region (its idle threads spin) during a load
        repack_group(tmp.data(), (const uint8_t *) data + g * gbytes, 0, K);
        if (memcmp(tmp.data(), dst + g * gbytes, gbytes) != 0) return false;
    }
    return true;
}

void buf_set_tensor(ggml_backend_buffer_t buffer, ggml_tensor * t, const void * data, size_t offset, size_t size) {
    const Buf * b = (const Buf *) buffer->context;
    const bool whole_weight = buffer->usage == GGML_BACKEND_BUFFER_USAGE_WEIGHTS && offset == 0 && size == ggml_nbytes(t);
    if (b->mapped && whole_weight) {
        const bool rp = repackable_shape(t) && G().isa.load() != ISA_NONE;
        if (cached_equal(b, t, data, offset, size, rp)) {  // the cache already holds it: nothing to write
            if (rp) {
                t->extra = &REPACKED_TAG;
                G().n_repacked++;
                G().bytes_repacked += (long long) size;
                G().bytes_cached += (long long) size;
                note_weight(t);
                release_source(data, size);
            }
            return;
        }
        repack_cache::mark_stale();  // written below into the private mapping; asrgguf writes a new file
    }
    if (buffer->usage == GGML_BACKEND_BUFFER_USAGE_WEIGHTS && offset == 0 && size == ggml_nbytes(t) &&
        repackable_shape(t) && G().isa.load() != ISA_NONE) {
        repack((uint8_t *) t->data, (const uint8_t *) data, t->ne[1], t->ne[0]);
        t->extra = &REPACKED_TAG;
        G().n_repacked++;
        G().bytes_repacked += (long long) size;
        note_weight(t);
        release_source(data, size);
        return;
    }
    if (t->extra == &REPACKED_TAG) {  // a partial write into a repacked weight: back to the plain layout
        std::vector<uint8_t> tmp(ggml_nbytes(t));
        unpack(tmp.data(), (const uint8_t *) t->data, t->ne[1], t->ne[0]);
        memcpy(t->data, tmp.data(), tmp.size());
        t->extra = nullptr;
    }
    memcpy((char *) t->data + offset, data, size);
}

void buf_get_tensor(ggml_backend_buffer_t, const ggml_tensor * t, void * data, size_t offset, size_t size) {
    if (t->extra == &REPACKED_TAG) {
        std::vector<uint8_t> tmp(ggml_nbytes(t));
        unpack(tmp.data(), (const uint8_t *) t->data, t->ne[1], t->ne[0]);
        memcpy(data, tmp.data() + offset, size);
        return;
    }
    memcpy(data, (const char *) t->data + offset, size);
}

bool buf_cpy_tensor(ggml_backend_buffer_t, const ggml_tensor *, ggml_tensor *) { return false; }

void buf_clear(ggml_backend_buffer_t buffer, uint8_t value) {
    Buf * b = (Buf *) buffer->context;
    memset(b->data, value, b->size);
}

const ggml_backend_buffer_i buf_iface = {
    /* .free_buffer   = */ buf_free,
    /* .get_base      = */ buf_get_base,
    /* .init_tensor   = */ nullptr,
    /* .memset_tensor = */ buf_memset_tensor,
    /* .set_tensor    = */ buf_set_tensor,
    /* .get_tensor    = */ buf_get_tensor,
    /* .set_tensor_2d = */ nullptr,
    /* .get_tensor_2d = */ nullptr,
    /* .cpy_tensor    = */ buf_cpy_tensor,
    /* .clear         = */ buf_clear,
    /* .reset         = */ nullptr,
};

const char * buft_get_name(ggml_backend_buffer_type_t) { return "ASRGGUF"; }

ggml_backend_buffer_t buft_alloc(ggml_backend_buffer_type_t buft, size_t size) {
    const size_t n = ((size ? size : 1) + 63) / 64 * 64;
    bool bound = false;
    void * p = repack_cache::try_map(size, &bound);
    const bool mapped = p != nullptr;
    if (!p) {
        p = aligned_alloc(64, n);
        if (!p) return nullptr;
        if (bound) repack_cache::bind_allocated((uint8_t *) p, size);
    }
    Buf * b = new (std::nothrow) Buf{(uint8_t *) p, size, mapped};
    if (!b) {
        if (mapped)
            munmap(p, size);
        else
            free(p);
        return nullptr;
    }
    return ggml_backend_buffer_init(buft, buf_iface, b, size);
}

size_t buft_get_alignment(ggml_backend_buffer_type_t) { return 64; }

bool buft_is_host(ggml_backend_buffer_type_t) { return true; }

ggml_backend_dev_t get_device(size_t index);

ggml_backend_buffer_type & buft_obj() {
    static ggml_backend_buffer_type buft = {
        /* .iface = */ {
            /* .get_name       = */ buft_get_name,
            /* .alloc_buffer   = */ buft_alloc,
            /* .get_alignment  = */ buft_get_alignment,
            /* .get_max_size   = */ nullptr,
            /* .get_alloc_size = */ nullptr,
            /* .is_host        = */ buft_is_host,
        },
        /* .device  = */ nullptr,
        /* .context = */ nullptr,
    };
    return buft;
}

bool is_my_buft(ggml_backend_buffer_type_t buft) { return buft == &buft_obj(); }

// --- device

const char * dev_get_name(ggml_backend_dev_t) { return "ASRGGUF"; }

const char * dev_get_description(ggml_backend_dev_t) {
    return G().isa.load() == ISA_AVX512VNNI ? "asrgguf native q8_0 (AVX-512 VNNI)" : "asrgguf native q8_0 (AVX2)";
}

void dev_get_memory(ggml_backend_dev_t, size_t * free_, size_t * total) { *free_ = *total = 0; }

enum ggml_backend_dev_type dev_get_type(ggml_backend_dev_t) { return GGML_BACKEND_DEVICE_TYPE_ACCEL; }

void dev_get_props(ggml_backend_dev_t dev, struct ggml_backend_dev_props * props) {
    props->name = dev_get_name(dev);
    props->description = dev_get_description(dev);
    props->type = dev_get_type(dev);
    dev_get_memory(dev, &props->memory_free, &props->memory_total);
    props->caps = {
        /* .async                = */ false,
        /* .host_buffer          = */ false,
        /* .buffer_from_host_ptr = */ false,
        /* .events               = */ false,
        /* .mmap_support         = */ false,
    };
}

ggml_backend_t dev_init_backend(ggml_backend_dev_t dev, const char *) {
    Ctx * ctx = new Ctx;
    return new ggml_backend{backend_guid(), backend_iface, dev, ctx};
}

ggml_backend_buffer_type_t dev_get_buffer_type(ggml_backend_dev_t) { return &buft_obj(); }

bool dev_supports_op(ggml_backend_dev_t, const struct ggml_tensor * op) {
    if (G().isa.load() == ISA_NONE) return false;
    // llama.cpp's weight placement asks with an unallocated weight: decline new weights when told to
    // (asrgguf_native_set_accept), never the products of weights already in our buffers
    if (!G().accept.load())
        for (int i = 0; i < GGML_MAX_SRC; ++i) {
            const ggml_tensor * t = op->src[i];
            if (t && t->data == nullptr && t->buffer && is_my_buft(t->buffer->buft)) return false;
        }
    if (op->op == GGML_OP_MUL_MAT) return supported_mul_mat(op) || (G().attention && supported_f16_mul_mat(op));
    if (op->op == GGML_OP_SOFT_MAX) return G().attention && supported_soft_max(op);
    if (op->op == GGML_OP_CONT) return G().attention && supported_cont(op);
    return G().elementwise && supported_elementwise(op);
}

bool dev_supports_buft(ggml_backend_dev_t, ggml_backend_buffer_type_t buft) {
    return is_my_buft(buft) || ggml_backend_buft_is_host(buft);
}

const ggml_backend_device_i dev_iface = {
    /* .get_name             = */ dev_get_name,
    /* .get_description      = */ dev_get_description,
    /* .get_memory           = */ dev_get_memory,
    /* .get_type             = */ dev_get_type,
    /* .get_props            = */ dev_get_props,
    /* .init_backend         = */ dev_init_backend,
    /* .get_buffer_type      = */ dev_get_buffer_type,
    /* .get_host_buffer_type = */ nullptr,
    /* .buffer_from_host_ptr = */ nullptr,
    /* .supports_op          = */ dev_supports_op,
    /* .supports_buft        = */ dev_supports_buft,
    /* .offload_op           = */ nullptr,
    /* .event_new            = */ nullptr,
    /* .event_free           = */ nullptr,
    /* .event_synchronize    = */ nullptr,
};

// --- reg

ggml_backend_reg & reg_obj();

const char * reg_get_name(ggml_backend_reg_t) { return "ASRGGUF"; }

size_t reg_get_device_count(ggml_backend_reg_t) { return G().detected == ISA_NONE ? 0 : 1; }

ggml_backend_dev_t reg_get_device(ggml_backend_reg_t reg, size_t index) {
    if (index != 0) return nullptr;
    static ggml_backend_device dev = {dev_iface, reg, nullptr};
    return &dev;
}

void * reg_get_proc_address(ggml_backend_reg_t, const char * name) {
    if (strcmp(name, "ggml_backend_set_n_threads") == 0) return (void *) set_n_threads;
    return nullptr;
}

const ggml_backend_reg_i reg_iface = {
    /* .get_name         = */ reg_get_name,
    /* .get_device_count = */ reg_get_device_count,
    /* .get_device       = */ reg_get_device,
    /* .get_proc_address = */ reg_get_proc_address,
};

ggml_backend_reg & reg_obj() {
    static ggml_backend_reg reg = {GGML_BACKEND_API_VERSION, reg_iface, nullptr};
    return reg;
}

// --- machine probes for the roofline (tools/bench_native.py): streaming read bandwidth, int8 dot throughput

__attribute__((target("avx512f,avx512bw")))
long long read_stream_512(const uint8_t * p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    for (size_t k = 0; k + 256 <= n; k += 256) {
        a0 = _mm512_add_epi32(a0, _mm512_load_si512((const void *) (p + k)));
        a1 = _mm512_add_epi32(a1, _mm512_load_si512((const void *) (p + k + 64)));
        a2 = _mm512_add_epi32(a2, _mm512_load_si512((const void *) (p + k + 128)));
        a3 = _mm512_add_epi32(a3, _mm512_load_si512((const void *) (p + k + 192)));
    }
    return _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
}

__attribute__((target("avx2")))
long long read_stream_256(const uint8_t * p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0;
    for (size_t k = 0; k + 64 <= n; k += 64) {
        a0 = _mm256_add_epi32(a0, _mm256_load_si256((const __m256i *) (p + k)));
        a1 = _mm256_add_epi32(a1, _mm256_load_si256((const __m256i *) (p + k + 32)));
    }
    __m256i s = _mm256_add_epi32(a0, a1);
    alignas(32) int v[8];
    _mm256_store_si256((__m256i *) v, s);
    return (long long) v[0] + v[7];
}

}  // namespace

extern "C" {

// GB/s of a read of `mib` MiB (each thread its contiguous share, as the decode kernel), best of `reps`
__attribute__((visibility("default"))) double asrgguf_native_probe_read_gbs(int mib, int n_threads, int reps) {
    init_global();
    const size_t n = (size_t) mib << 20;
    uint8_t * buf = (uint8_t *) aligned_alloc(64, n);
    if (!buf) return 0.0;
    memset(buf, 1, n);
    double best = 0.0;
    volatile long long sink = 0;
    for (int r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(n_threads)
        {
            const int i = omp_get_thread_num(), nt = omp_get_num_threads();
            const size_t a = n / nt * i / 256 * 256, b = i == nt - 1 ? n : n / nt * (i + 1) / 256 * 256;
            const long long v = G().detected == ISA_AVX512VNNI ? read_stream_512(buf + a, b - a)
                                                               : read_stream_256(buf + a, b - a);
#pragma omp atomic
            sink += v;
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, n / s / 1e9);
    }
    free(buf);
    return best;
}

__attribute__((visibility("default"))) ggml_backend_reg_t ggml_backend_init(void) {
    init_global();
    ggml_backend_reg_t reg = &reg_obj();
    buft_obj().device = reg_get_device(reg, 0);
    return reg;
}

// --- small C API for asrgguf (ctypes) and the tests

__attribute__((visibility("default"))) const char * asrgguf_native_version(void) { return ASRGGUF_NATIVE_VERSION; }

// 0 none, 1 AVX2, 2 AVX-512 VNNI: what the CPU has
__attribute__((visibility("default"))) int asrgguf_native_detected_isa(void) {
    init_global();
    return G().detected;
}

// the path in use; set_isa(1) forces AVX2 on an AVX-512 machine (never above what the CPU has)
__attribute__((visibility("default"))) int asrgguf_native_isa(void) {
    init_global();
    return G().isa.load();
}

__attribute__((visibility("default"))) int asrgguf_native_set_isa(int isa) {
    init_global();
    // never below AVX2 where the CPU has it: repacked weights can only be multiplied here
    if (isa < ISA_AVX2) isa = ISA_AVX2;
    if (isa > G().detected) isa = G().detected;
    G().isa = isa;
    return isa;
}

// 1: q8_0 weights of models loaded from now on come to this backend; 0: they stay on llama.cpp's CPU
__attribute__((visibility("default"))) void asrgguf_native_set_accept(int on) { G().accept = on ? 1 : 0; }

// the bytes of the repacked weight `name` as the GGUF holds them (unpacked from this backend's buffer), into
// dst of `size` bytes: 0, -1 no such weight, -2 another size
__attribute__((visibility("default"))) int asrgguf_native_read_weight(const char * name, void * dst, size_t size) {
    const ggml_tensor * t = nullptr;
    {
        std::lock_guard<std::mutex> lk(g_weights_mu);
        for (const ggml_tensor * w : g_weights)
            if (strcmp(w->name, name) == 0) t = w;
    }
    if (!t) return -1;
    if (ggml_nbytes(t) != size) return -2;
    buf_get_tensor(t->buffer, t, dst, 0, size);
    return 0;
}

// bytes of repacked weights taken from a repack cache file (native/repack_cache.h) instead of repacked
__attribute__((visibility("default"))) long long asrgguf_native_cached_bytes(void) { return G().bytes_cached.load(); }

// what decides the contents of the weight buffer besides the GGUF: part of a repack cache's key
__attribute__((visibility("default"))) const char * asrgguf_native_layout(void) {
    init_global();
    static char s[96];
    snprintf(s, sizeof s, "layout=16x64-u8 group=%d elementwise=%d attention=%d", GR, (int) G().elementwise,
             (int) G().attention);
    return s;
}

// bytes of llama.cpp's file mapping dropped after their weights were repacked (release_source)
__attribute__((visibility("default"))) long long asrgguf_native_released_bytes(void) { return g_released_bytes.load(); }

// [repacked tensors, repacked bytes, products computed, graph splits computed, ns inside graph_compute]
__attribute__((visibility("default"))) void asrgguf_native_stats(long long * out) {
    Global & g = G();
    out[4] = g.ns.load();
    out[0] = g.n_repacked.load();
    out[1] = g.bytes_repacked.load();
    out[2] = g.n_mul_mat.load();
    out[3] = g.n_graphs.load();
}

}  // extern "C"
