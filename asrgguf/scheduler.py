"""The one scheduler: pieces of any number of requests (files, uploads, live utterances) decoded together.

A `Request` is a source of pieces (a `Feed`) and the options to transcribe them with. The scheduler owns
the engine's one `generate.Batcher` (the sequences of its llama.cpp context) and, at every `pump`:

* takes cancels and new requests (thread-safe: `submit` and `cancel` may come from any thread);
* fills free sequences: the request holding the fewest sequences (the oldest on ties) that has a piece
  ready gets the next one: encoded (`engine.make_job`) and prefilled; a request never holds more
  sequences than its `max_active` (a file's `parallel`); a live stream's sequence kept between its jobs
  (`generate.KeptSeq`) counts as free for the others (taken when needed) until `release` frees it;
* grows the context when a piece does not fit: admissions stop until the sequences are idle, then the
  KV cache is made larger (the header's duration of a file is only an estimate);
* advances every active sequence (`Batcher.step`: one `llama_decode` for all; the C loop, decode_loop.py, runs
  steps until a piece ends or an interrupt) and hands each finished piece to `engine.segment`, in piece order.

Whoever needs results drives it: `Transcriber.transcribe`'s generator pumps in the caller's thread, the
server pumps in its one engine thread (`run_forever`). Pumps are serialized by a lock, so several
generators of one engine, consumed in turn, decode their pieces together in one batch.
"""
from __future__ import annotations

import collections
import itertools
import queue
import threading
import time
from typing import Callable, Iterator

from .errors import AsrggufError
from .pieces import SAMPLE_RATE


class _End:
    """A feed has no more pieces."""


END = _End()


class Feed:
    """Where a request's pieces come from. `poll()` returns the next piece, None when none is ready yet,
    or END; it raises (AsrggufError for bad input) when the source fails."""

    def poll(self):
        raise NotImplementedError

    def close(self) -> None:
        pass


class IterFeed(Feed):
    """Pieces read in the scheduler's thread, when a sequence is free for them (files in the CLI, Python)."""

    def __init__(self, pieces: Iterator):
        self._it = pieces

    def poll(self):
        p = next(self._it, None)
        return END if p is None else p

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close:
            close()


class ThreadFeed(Feed):
    """Pieces read by a thread of their own, at most `ahead` waiting (the server: a slow upload's decoding
    never stalls the decode of the others). `on_first()` is called when the first piece is read (or the
    source turns out empty); `wake()` when a piece is ready."""

    def __init__(self, open_pieces: Callable[[], Iterator], ahead: int = 2, on_first: Callable[[], None] = None,
                 wake: Callable[[], None] | None = None, name: str = "asrgguf-reader"):
        self._q: queue.Queue = queue.Queue(ahead)
        self._stop = threading.Event()
        self._on_first, self._wake = on_first, wake or (lambda: None)
        self._thread = threading.Thread(target=self._read, args=(open_pieces,), name=name, daemon=True)
        self._thread.start()

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.5)
            except queue.Full:
                continue
            self._wake()
            return True
        return False

    def _read(self, open_pieces) -> None:
        first = True
        try:
            for p in open_pieces():
                if first and self._on_first:
                    self._on_first()
                first = False
                if not self._put(p):
                    return
            if first and self._on_first:
                self._on_first()
            self._put(END)
        except BaseException as e:  # noqa: BLE001 - handed to the scheduler, which fails this request only
            self._put(e)

    def poll(self):
        try:
            item = self._q.get_nowait()
        except queue.Empty:
            return None
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()


class PushFeed(Feed):
    """Pieces handed in by their producer (a live stream's utterances): `push(piece)`, then `end()`."""

    def __init__(self):
        self._q: collections.deque = collections.deque()

    def push(self, piece) -> None:
        self._q.append(piece)

    def end(self) -> None:
        self._q.append(END)

    def poll(self):
        return self._q.popleft() if self._q else None


class Request:
    """One client's pieces and their results, inside the scheduler.

    `emit(kind, payload)`, when given, is called from the scheduler's thread with ("segment", Segment),
    ("done", self) or ("error", exception); without it, results wait in `ready` / `error` for the caller."""

    _ids = itertools.count(1)

    def __init__(self, feed: Feed, opts, emit: Callable[[str, object], None] | None = None,
                 max_active: int | None = None, keep_audio: bool | None = None, tag=None):
        self.id = next(self._ids)
        self.feed, self.opts, self.emit, self.tag = feed, opts, emit, tag
        self.max_active = max_active or getattr(opts, "parallel", 1)
        self.keep_audio = getattr(opts, "timestamps", "segment") == "word" if keep_audio is None else keep_audio
        self.longest: int | None = None   # samples of the longest piece it can make, when known (a header)
        self.ready: collections.deque = collections.deque()   # delivered segments, in order (no emit)
        self.error: BaseException | None = None
        self.finished = False
        self.cancelled = False
        self.active = 0
        self._eof = False
        self._n_pieces = 0            # pieces read
        self._next_index = 0          # the next segment to deliver
        self._done: dict = {}         # finished segments waiting for those before them
        self._waiting = None          # an encoded job waiting for a sequence or a larger context
        self.stats = {"features": 0.0, "encoder": 0.0, "prefill": 0.0, "decode": 0.0, "align": 0.0,
                      "prompt_tokens": 0, "generated_tokens": 0, "decode_steps_tokens": 0, "pieces": 0,
                      "audio_seconds": 0.0, "draft_tokens": 0, "draft_accepted": 0,
                      "prefilled_tokens": 0, "reused_tokens": 0}

    def _deliver(self, kind: str, payload) -> None:
        if self.emit is not None:
            self.emit(kind, payload)
        elif kind == "segment":
            self.ready.append(payload)


class Scheduler:
    """The engine's batch of sequences, shared by every request. `engine` gives the stages:
    `make_job(piece, opts, timings, tag)`, `segment(job, piece, opts)`, `positions_needed(opts, n)`,
    `decoder`, `stop_ids`."""

    def __init__(self, engine, n_seq: int = 1, n_positions: int = 0):
        self.engine = engine
        self.batcher = None
        self._want = (max(1, n_seq), n_positions)
        self._lock = threading.RLock()        # one pump at a time
        self._inbox_lock = threading.Lock()
        self._inbox: list[Request] = []
        self._cancels: list[Request] = []
        self._releases: list = []              # kept sequences to free (live streams that ended)
        self.requests: list[Request] = []      # admitted, in arrival order
        self._wake = threading.Event()
        self._stop = False
        self.stats = {"requests_done": 0, "pieces": 0, "encode_s": 0.0, "prefill_s": 0.0, "decode_s": 0.0,
                      "steps": 0, "step_rows": 0, "generated_tokens": 0, "cancelled_jobs": 0,
                      "prefilled_tokens": 0, "reused_tokens": 0}

    # --- any thread
    def submit(self, req: Request) -> Request:
        self._now(self._inbox, req, now=False)
        return req

    def cancel(self, req: Request) -> None:
        """Drop a request (its client went away, or its generator was closed): its sequences are freed at
        once when no pump is running, else at the next pump."""
        if req.finished:
            return
        req.cancelled = True
        self._now(self._cancels, req)

    def release(self, keep, now: bool = True) -> None:
        """Free a live stream's kept sequence (`generate.KeptSeq`: the stream ended or its client went away) as
        `cancel` frees a request's: at once when no pump is running, else (or now=False) at the next pump."""
        keep.released = True   # from now on no job keeps it
        self._now(self._releases, keep, now)

    def _now(self, box: list, item, now: bool = True) -> None:
        with self._inbox_lock:
            box.append(item)
        self.wake(force=True)
        if now and self._lock.acquire(blocking=False):
            try:
                self._take_inbox()
            finally:
                self._lock.release()

    def wake(self, force: bool = False) -> None:
        self._wake.set()
        if self.batcher is not None and (force or self.batcher.free):   # something for the next pump to do:
            self.batcher.interrupt()   # a running C decode loop returns after its step

    @property
    def n_seq(self) -> int:
        return self.batcher.n_seq if self.batcher else self._want[0]

    @property
    def n_ctx(self) -> int:
        return self.engine.decoder.n_ctx if self.batcher else 0

    def reserve(self, n_seq: int, n_positions: int) -> None:
        """Size the batch now (the server: its sequences and positions before the first request)."""
        with self._lock:
            self._ensure(n_seq, n_positions)

    # --- the pump
    def pump(self) -> bool:
        """One round: admissions, fills, one decode step, deliveries. Returns False when idle (nothing
        active and nothing ready to start)."""
        with self._lock:
            self._take_inbox()
            added = self._fill()
            b = self.batcher
            if b is None or not b.active:
                return added
            holders = {j.tag[0] for j in b.active}
            t0 = time.perf_counter()
            try:
                finished = b.step(None)
            except Exception as e:  # noqa: BLE001 - the requests in the step fail, the others go on
                for r in holders:
                    self._drop(r, e)
                return True
            dt = time.perf_counter() - t0
            self.stats["steps"] += b.last_steps
            self.stats["step_rows"] += b.last_rows
            self.stats["decode_s"] += dt
            for r in holders:
                r.stats["decode"] += dt
            for job in finished:
                self._finished(job)
            return True

    def run_forever(self, idle_wait: float = 0.5) -> None:
        """Pump until `stop()` (the server's engine thread); sleeps while there is nothing to do."""
        while not self._stop:
            self._wake.clear()
            if not self.pump():
                self._wake.wait(idle_wait)

    def stop(self) -> None:
        self._stop = True
        self._wake.set()

    def drain(self, err: BaseException) -> None:
        """Fail every request still inside (shutting down)."""
        with self._lock:
            with self._inbox_lock:
                left, self._inbox = self.requests + self._inbox, []
            for r in left:
                self._drop(r, err)

    # --- internals (under the pump lock)
    def _ensure(self, n_seq: int, n_positions: int) -> None:
        from .generate import Batcher

        b = self.batcher
        if b is not None and (n_seq <= b.n_seq) and n_positions <= self.engine.decoder.n_ctx:
            return
        if b is not None and b.active:
            raise RuntimeError("the batch can only grow while its sequences are idle")
        n_seq = max(n_seq, b.n_seq if b else 1, self._want[0])
        n_positions = max(n_positions, self._want[1])
        self.batcher = Batcher(self.engine.decoder, self.engine.stop_ids, n_seq, n_positions)
        if b is not None:
            self.batcher.prefill_s, self.batcher.decode_s = b.prefill_s, b.decode_s

    def _take_inbox(self) -> None:
        with self._inbox_lock:
            inbox, self._inbox = self._inbox, []
            cancels, self._cancels = self._cancels, []
            releases, self._releases = self._releases, []
        for r in cancels:
            self._drop(r, None)
        for k in releases:
            if self.batcher is not None:
                self.batcher.release(k)
        for r in inbox:
            if r.cancelled or r.finished:
                r.finished = True
                r.feed.close()
                continue
            self.requests.append(r)

    def _candidates(self) -> list[Request]:
        return [r for r in self.requests if not r.finished and r.active < r.max_active
                and (r._waiting is not None or not r._eof)]

    def _next_job(self, r: Request):
        """The request's next encoded job (None when its feed has nothing ready)."""
        if r._waiting is not None:
            return r._waiting
        piece = r.feed.poll()
        if piece is None:
            return None
        if piece is END:
            r._eof = True
            self._maybe_done(r)
            return None
        r._n_pieces += 1
        r.stats["audio_seconds"] = max(r.stats["audio_seconds"], (piece.start + piece.length) / SAMPLE_RATE)
        t: dict = {}
        job = self.engine.make_job(piece, r.opts, t, tag=(r, piece))
        for k, v in t.items():
            r.stats[k] = r.stats.get(k, 0.0) + v
            self.stats["encode_s"] += v
        self.stats["pieces"] += 1
        if not r.keep_audio:
            piece.wav = None  # only the embeddings wait for the decode
        r._waiting = job
        return job

    def _fill(self) -> bool:
        added = False
        blocked = set()
        while True:
            cands = [r for r in self._candidates() if r.id not in blocked]
            b = self.batcher
            if not cands or (b is not None and not b.free):
                return added
            r = min(cands, key=lambda q: (q.active, q.id))
            try:
                job = self._next_job(r)
            except Exception as e:  # noqa: BLE001 - bad input fails its own request only
                self._drop(r, e)
                continue
            if job is None:
                blocked.add(r.id)
                continue
            need_seq = max(r.max_active, self._want[0])
            if b is None or job.n_positions > self.engine.decoder.n_ctx or need_seq > b.n_seq:
                if b is not None and b.active:
                    if job.n_positions > self.engine.decoder.n_ctx:
                        return added   # admissions wait until the sequences are idle, then the context grows
                else:
                    longest = self.engine.positions_needed(r.opts, r.longest)
                    try:
                        self._ensure(need_seq, max(job.n_positions, longest))
                    except Exception as e:  # noqa: BLE001
                        self._drop(r, e)
                        continue
                    b = self.batcher
            r._waiting = None
            try:
                b.add(job)
            except Exception as e:  # noqa: BLE001
                self._drop(r, e)
                continue
            r.active += 1
            r.stats["prompt_tokens"] += len(job.prompt)
            for key, v in (("prefilled_tokens", job.prefilled), ("reused_tokens", job.reused)):
                r.stats[key] += v
                self.stats[key] += v
            r.stats["prefill"] += job.prefill_s
            self.stats["prefill_s"] += job.prefill_s
            added = True

    def _finished(self, job) -> None:
        r, piece = job.tag
        if r.finished or job.cancelled:
            return
        r.active -= 1
        try:
            ta = time.perf_counter()
            seg = self.engine.segment(job, piece, r.opts)
            if getattr(r.opts, "timestamps", "segment") == "word":
                r.stats["align"] += time.perf_counter() - ta
        except Exception as e:  # noqa: BLE001
            self._drop(r, e)
            return
        r.stats["generated_tokens"] += len(job.ids)
        for key, v in (("draft_tokens", len(job.draft)), ("draft_accepted", job.draft_accepted)):
            r.stats[key] += v
            self.stats[key] = self.stats.get(key, 0) + v
        r.stats["decode_steps_tokens"] += max(0, len(job.ids) - 1)
        self.stats["generated_tokens"] += len(job.ids)
        r._done[piece.index] = seg
        while r._next_index in r._done:
            r.stats["pieces"] += 1
            r._deliver("segment", r._done.pop(r._next_index))
            r._next_index += 1
        self._maybe_done(r)

    def _maybe_done(self, r: Request) -> None:
        if r._eof and r._waiting is None and r.active == 0 and r._next_index >= r._n_pieces and not r.finished:
            r.finished = True
            self.stats["requests_done"] += 1
            if r in self.requests:
                self.requests.remove(r)
            r._deliver("done", r)

    def _drop(self, r: Request, err: BaseException | None) -> None:
        if r.finished:
            return
        r.finished = True
        r.cancelled = r.cancelled or err is None
        r.feed.close()
        r._waiting = None
        if self.batcher is not None:
            for job in [j for j in self.batcher.active if j.tag[0] is r]:
                self.batcher.cancel(job)
                self.stats["cancelled_jobs"] += 1
        if r in self.requests:
            self.requests.remove(r)
        if err is not None:
            r.error = err
            if r.emit is not None:
                r.emit("error", err)


def error_line(e: BaseException) -> str:
    """One line for a request's failure (AsrggufError as it is, anything else with its type)."""
    if isinstance(e, AsrggufError):
        return str(e)
    first = str(e).strip().splitlines()[0] if str(e).strip() else "failed"
    return f"{type(e).__name__}: {first}"
