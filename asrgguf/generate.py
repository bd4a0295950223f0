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
        self.prefill_s = 0.0   # wall time in prefills and in steps, over the batcher's life
        self.decode_s = 0.0

    @property
    def free(self) -> int:
        return len(self._free)

    def fits(self, job: Job) -> bool:
        return job.n_positions <= self.decoder.n_ctx

    def add(self, job: Job) -> None:
        """Prefill the job's prompt into a free sequence; its first token is taken at the next step."""
        if not self._free:
            raise RuntimeError("no free sequence")
        dec = self.decoder
        if not self.fits(job):
            if self.active:
                raise RuntimeError("the context must grow, and only an idle batcher can grow it")
            dec.ensure_ctx(job.n_positions, self.n_seq)
        if job.n_positions > dec.n_ctx:
            raise AsrggufError(f"a piece needs {job.n_positions} context positions, the decoder holds {dec.n_ctx}")
        s = self._free.pop(0)
        t0 = time.perf_counter()
        try:
            dec.clear(s)
            p = job.prompt
            q = dec.eval_tokens(p.prefix, 0, seq=s)
            q = dec.eval_embeddings(job.emb, q, seq=s, logits_last=not p.suffix)
            if p.suffix:
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
            raise
        job._seq, job._pos = s, q
        job.emb = None  # the KV cache has it now
        job.prefill_s = time.perf_counter() - t0
        self.prefill_s += job.prefill_s
        self.active.append(job)

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

    def step(self, max_steps: int = 1) -> list[Job]:
        """Take each active job's pending token, then advance the unfinished ones by one decode; with the C
        loop, repeat that up to max_steps times (about decode_loop.SECONDS at most), stopping after the step
        in which a job finished or on `interrupt()`. The Python loop takes one step.

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

    def _step_c(self, max_steps: int) -> list[Job]:
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
