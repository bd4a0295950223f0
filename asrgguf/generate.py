"""Greedy generation for many audio pieces at once: continuous batching over one llama.cpp context.

Each piece (a prompt with its audio embeddings) gets a free sequence of the context: its prompt is
prefilled there, then every active sequence advances one token per `llama_decode` call (one batch
row each), so the decoder's weights are read once per step for all of them. A piece that finishes
frees its sequence at once and the next one can join at the following step, whether it belongs to
the same recording (`--parallel`) or to another request (the server). The ids of each sequence are
those it gets alone, up to the arithmetic of a batched matrix product.

The repetition guard stops a generation whose tail is one n-gram repeated past the thresholds
below (the official package has no such stop; it only collapses repeats in the text afterwards).
"""
from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import AsrggufError
from .prompt import Prompt

REPEAT_MIN_COUNT = 8     # an n-gram repeated this often in a row ...
REPEAT_MIN_TOKENS = 32   # ... and covering at least this many tokens is a loop
REPEAT_MAX_NGRAM = 16


def is_repeating(ids: list[int]) -> bool:
    """True when the generation ends in one n-gram (n <= 16) repeated past the thresholds."""
    for n in range(1, REPEAT_MAX_NGRAM + 1):
        reps = max(REPEAT_MIN_COUNT, -(-REPEAT_MIN_TOKENS // n))
        span = n * reps
        if len(ids) < span:
            break
        tail = ids[-span:]
        if tail == tail[:n] * reps:
            return True
    return False


@dataclass(eq=False)
class Job:
    """One piece to decode: its prompt, embeddings and limits; ids and state filled as it runs."""
    prompt: Prompt
    emb: np.ndarray
    max_new_tokens: int
    repetition_guard: bool = True
    exact_tokens: bool = False          # benchmarks: generate exactly max_new_tokens, end-of-turn ignored
    tag: Any = None                     # the caller's (which request, which piece)
    # live streams (asrgguf/live.py): `prefix` is taken as already generated (prefilled after the prompt and
    # counted in ids: the official streaming's rollback, not checked); `draft` is checked: prefilled after the
    # prompt (and prefix) in one batch, its tokens kept while each is the greedy choice, the rest dropped, so
    # the ids are the greedy decode's (a final's draft is the last partial's tokens)
    prefix: list[int] = field(default_factory=list)
    draft: list[int] = field(default_factory=list)
    draft_accepted: int = 0
    keep: "KeptSeq | None" = None       # a live stream's kept sequence: prefill only what changed (KeptSeq)
    reused: int = 0                     # prompt positions taken from a kept sequence's KV cache
    prefilled: int = 0                  # positions evaluated by `Batcher.add` (prompt, prefix, draft)
    ids: list[int] = field(default_factory=list)
    repetition_stopped: bool = False
    prefill_s: float = 0.0
    decode_s: float = 0.0               # wall time of the steps this job took part in
    cancelled: bool = False
    _seq: int = -1
    _pos: int = 0
    _next: int = -1

    @property
    def n_positions(self) -> int:
        """Context positions this job can need: its prompt and every token it may generate."""
        return len(self.prompt) + self.max_new_tokens


class KeptSeq:
    """A live stream's hold on one sequence between its jobs: the KV cache of the prompt's prefix ids and of the
    embedding rows after them (positions 0..) stays, and the stream's next job re-prefills only from the first
    position whose input differs (ids equal, rows equal bit for bit), so a partial step re-prefills the open
    encoder window, the suffix and the draft, and a final reuses only rows its own encoder gave bit for bit.
    A cache, not a reservation: a job that finds no free sequence takes the one kept idle longest, a context
    made anew (grown) drops them all, and `release` (the stream's end or disconnect) frees it."""

    def __init__(self):
        self.batcher: "Batcher | None" = None
        self.seq = -1
        self.ids: list[int] = []               # the prompt prefix at positions 0..len(ids)
        self.emb: np.ndarray | None = None     # the rows after it
        self.job: Job | None = None            # the job using the sequence now
        self.released = False

    def same(self, ids: list[int], emb: np.ndarray) -> int:
        """Leading positions whose inputs equal the kept ones (ids, then rows bit for bit)."""
        n = 0
        while n < min(len(ids), len(self.ids)) and ids[n] == self.ids[n]:
            n += 1
        if n < len(ids) or n < len(self.ids) or self.emb is None:
            return n
        emb = np.ascontiguousarray(emb, np.float32)
        m = min(len(emb), len(self.emb))
        diff = np.flatnonzero((emb[:m].view(np.int32) != self.emb[:m].view(np.int32)).any(axis=1))
        return n + (int(diff[0]) if diff.size else m)


class Batcher:
    """Sequences of one llama.cpp context shared by jobs that join and leave at any step."""

    def __init__(self, decoder, stop_ids: set[int], n_seq: int = 1, n_positions: int = 0):
        from . import decode_loop

        self.decoder = decoder
        self.stop_ids = set(stop_ids)
        # the greedy steps in C (asrgguf/decode_loop.py), else the Python loop below (ASRGGUF_DECODE_LOOP)
        self.loop = decode_loop.for_decoder(decoder, self.stop_ids,
                                            (REPEAT_MIN_COUNT, REPEAT_MIN_TOKENS, REPEAT_MAX_NGRAM))
        self.last_steps = self.last_rows = 0   # llama_decode calls and their rows in the last step()
        self.n_seq = max(1, n_seq)
        decoder.ensure_ctx(max(n_positions, 1), self.n_seq)
        self.active: list[Job] = []
        self._free = list(range(self.n_seq))
        self._kept: collections.OrderedDict[int, KeptSeq] = collections.OrderedDict()   # idle kept, oldest first
        self.prefill_s = 0.0   # wall time in prefills and in steps, over the batcher's life
        self.decode_s = 0.0

    @property
    def free(self) -> int:
        """Sequences a job can take: the free ones and the idle kept ones (evicted when needed)."""
        return len(self._free) + len(self._kept)

    @property
    def kept(self) -> int:
        return len(self._kept)

    def fits(self, job: Job) -> bool:
        return job.n_positions <= self.decoder.n_ctx

    def add(self, job: Job) -> None:
        """Prefill the job's prompt into a free sequence (or its kept one, from the first changed position on);
        its first token is taken at the next step."""
        if not self.free:
            raise RuntimeError("no free sequence")
        dec = self.decoder
        if not self.fits(job):
            if self.active:
                raise RuntimeError("the context must grow, and only an idle batcher can grow it")
            self.drop_kept()
            dec.ensure_ctx(job.n_positions, self.n_seq)
        if job.n_positions > dec.n_ctx:
            raise AsrggufError(f"a piece needs {job.n_positions} context positions, the decoder holds {dec.n_ctx}")
        p = job.prompt
        k = job.keep if job.keep is not None and job.keep.job is None and not job.keep.released else None
        same = 0
        if k is not None and k.batcher is self and self._kept.get(k.seq) is k:
            s = k.seq
            del self._kept[s]
            # at least one row of the prompt is evaluated: its logits give the first token
            same = min(k.same(p.prefix, job.emb), len(p) - 1)
        else:
            s = self._free.pop(0) if self._free else self._evict()
        t0 = time.perf_counter()
        try:
            if same:
                dec.forget_from(s, same)
            else:
                dec.clear(s)
            n0 = len(p.prefix)
            q = dec.eval_tokens(p.prefix[same:], same, seq=s) if same < n0 else same
            if q - n0 < len(job.emb):
                q = dec.eval_embeddings(job.emb[q - n0:], q, seq=s, logits_last=not p.suffix)
            if p.suffix:   # never kept (same <= len(prefix) + rows): its positions move with the rows
                q = dec.eval_tokens(p.suffix, q, seq=s, logits_last=True)
            if job.prefix:
                q = dec.eval_tokens(job.prefix, q, seq=s, logits_last=True)
                job.ids = list(job.prefix)
            job._next = int(np.argmax(dec.logits(-1)))
            if job.draft:
                q = self._verify_draft(job, s, q)
        except BaseException:
            dec.clear(s)
            self._free.insert(0, s)
            if k is not None:
                k.batcher, k.seq = None, -1
            raise
        if k is not None:
            k.batcher, k.seq, k.ids, k.job = self, s, list(p.prefix), job
            k.emb = np.ascontiguousarray(job.emb, np.float32)
        job._seq, job._pos = s, q
        job.reused, job.prefilled = same, q - same
        job.emb = None  # the KV cache has it now
        job.prefill_s = time.perf_counter() - t0
        self.prefill_s += job.prefill_s
        self.active.append(job)

    def _evict(self) -> int:
        """The sequence kept idle longest, taken from its stream (whose next job prefills anew)."""
        s, k = self._kept.popitem(last=False)
        k.batcher, k.seq, k.emb = None, -1, None
        return s

    def release(self, k: KeptSeq) -> None:
        """A stream is done with its kept sequence: free it now (or when its running job ends)."""
        k.released = True
        if k.batcher is self and self._kept.get(k.seq) is k:
            del self._kept[k.seq]
            self.decoder.clear(k.seq)
            self._free.append(k.seq)
            self._free.sort()
        if k.job is None:
            k.batcher, k.seq, k.emb = None, -1, None

    def drop_kept(self) -> None:
        """Free every kept sequence (the context is about to be made anew)."""
        while self._kept:
            s = self._evict()
            self._free.append(s)
        self._free.sort()

    def _verify_draft(self, job: Job, seq: int, q: int) -> int:
        """Keep the draft's tokens while each is the greedy choice (one batched pass over them); the KV cache
        after the last kept one is dropped. Returns the next position."""
        dec = self.decoder
        room = job.max_new_tokens - len(job.ids) - 1   # the last token is always taken by a step
        draft = [t for t in job.draft[:max(0, min(room, dec.n_batch))]]
        k = 0
        if draft and job._next == draft[0] and (job.exact_tokens or draft[0] not in self.stop_ids):
            dec.eval_tokens(draft, q, seq=seq, logits_all=True)
            preds = [int(np.argmax(dec.logits(i))) for i in range(len(draft))]
            k = 1
            while k < len(draft) and preds[k - 1] == draft[k] and \
                    (job.exact_tokens or draft[k] not in self.stop_ids):
                k += 1
            # a greedy decode stops at a repetition loop: leave the token that completes one to the step
            if job.repetition_guard and not job.exact_tokens:
                for i in range(1, k + 1):
                    if is_repeating(job.ids + draft[:i]):
                        k = i - 1
                        break
            job._next = draft[0] if k == 0 else preds[k - 1]
            dec.forget_from(seq, q + k)
        job.ids.extend(draft[:k])
        job.draft_accepted = k
        return q + k

    def _release(self, job: Job) -> None:
        self.active.remove(job)
        k = job.keep
        if k is not None and k.job is job:
            k.job = None
            if not k.released:   # keep the prompt prefix and the rows for the stream's next job
                self.decoder.forget_from(job._seq, len(k.ids) + len(k.emb))
                self._kept[job._seq] = k
                return
            k.batcher, k.seq, k.emb = None, -1, None
        self.decoder.clear(job._seq)
        self._free.append(job._seq)
        self._free.sort()

    def cancel(self, job: Job) -> None:
        """Drop a job (its client went away): its sequence is free for the next one."""
        job.cancelled = True
        if job in self.active:
            self._release(job)

    def interrupt(self) -> None:
        """Make a running multi-step `step` of the C loop return after its current step (any thread)."""
        if self.loop is not None:
            self.loop.interrupt()

    def step(self, max_steps: int | None = 1) -> list[Job]:
        """Take each active job's pending token, then advance the unfinished ones by one decode; with the C
        loop, repeat that up to max_steps times (None: decode_loop.STEPS; about decode_loop.SECONDS at most),
        stopping after the step in which a job finished or on `interrupt()`. The Python loop takes one step.

        Returns the jobs that finished (their sequences are free again)."""
        if self.loop is not None:
            return self._step_c(max_steps)
        done, going = [], []
        for job in list(self.active):
            tok = job._next
            if not job.exact_tokens and tok in self.stop_ids:
                done.append(job)
                continue
            job.ids.append(tok)
            if len(job.ids) >= job.max_new_tokens:
                done.append(job)
            elif job.repetition_guard and not job.exact_tokens and is_repeating(job.ids):
                job.repetition_stopped = True
                done.append(job)
            else:
                going.append(job)
        for job in done:
            self._release(job)
        if going:
            t0 = time.perf_counter()
            self.decoder.step([j._next for j in going], [j._pos for j in going], [j._seq for j in going])
            for row, j in enumerate(going):
                j._pos += 1
                j._next = int(np.argmax(self.decoder.logits(row)))
            dt = time.perf_counter() - t0
            self.decode_s += dt
            for j in going:
                j.decode_s += dt
        self.last_steps, self.last_rows = (1 if going else 0), len(going)
        return done

    def _step_c(self, max_steps: int | None) -> list[Job]:
        self.last_steps = self.last_rows = 0
        if not self.active:
            return []
        try:
            done, self.last_steps, self.last_rows, dt, err = self.loop.run(list(self.active), max_steps)
        finally:
            self.loop.clear_interrupt()
        self.decode_s += dt
        for job in done:
            self._release(job)
        if err is not None:
            raise err
        return done
