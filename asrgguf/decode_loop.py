"""The greedy decode loop in C (native/decode_loop.c, built into asrgguf/_native/libasrgguf_loop.so).

`generate.Batcher.step` runs many greedy steps in one call of the library: batch building, `llama_decode`,
the argmax of each row's logits (numpy's: the first maximum), stop tokens, the token limit and the repetition
guard, as the Python loop does them. It comes back after the step in which a sequence finished, after
`STEPS` steps or `SECONDS` seconds, or when `Loop.interrupt()` is called (the scheduler does on new requests,
wakes and cancels; from any thread): no Python runs between those steps.

The library calls llama.cpp through pointers to `llama_decode` and `llama_get_logits_ith` taken from the
libllama that llama-cpp-python loaded (so there is one libllama in the process, and the library links none).

ASRGGUF_DECODE_LOOP=c forces it (an error when it cannot load), =python the Python loop (one step per call);
auto or unset: C when built. ASRGGUF_DECODE_LOOP_LIB=path picks another build.
"""
from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import numpy as np

from .errors import AsrggufError
from .native import packaged_library

LIB_NAME = "libasrgguf_loop.so"
VERSION = 1
STEPS = 64          # at most this many steps per call ...
SECONDS = 0.5       # ... and about this long (a step in progress is finished)

SEQ_GOING, SEQ_STOP, SEQ_MAX_TOKENS, SEQ_REPEATING = 0, 1, 2, 3
END_FINISHED, END_STEPS, END_TIME, END_INTERRUPT = 0, 1, 2, 3
END_DECODE_FAILED, END_NO_LOGITS, END_NO_MEMORY = -1, -2, -3
FLAG_EXACT, FLAG_GUARD = 1, 2


class Seq(ctypes.Structure):
    _fields_ = [("seq_id", ctypes.c_int32), ("pos", ctypes.c_int32), ("next", ctypes.c_int32),
                ("n_ids", ctypes.c_int32), ("cap", ctypes.c_int32), ("max_new", ctypes.c_int32),
                ("flags", ctypes.c_int32), ("state", ctypes.c_int32), ("n_decoded", ctypes.c_int32),
                ("reserved", ctypes.c_int32), ("decode_ns", ctypes.c_int64), ("ids", ctypes.c_void_p)]


class Args(ctypes.Structure):
    _fields_ = [("decode", ctypes.c_void_p), ("get_logits_ith", ctypes.c_void_p), ("ctx", ctypes.c_void_p),
                ("stop_ids", ctypes.c_void_p), ("interrupt", ctypes.c_void_p), ("max_ns", ctypes.c_int64),
                ("n_stop", ctypes.c_int32), ("n_vocab", ctypes.c_int32), ("n_pos", ctypes.c_int32),
                ("max_steps", ctypes.c_int32), ("rep_min_count", ctypes.c_int32),
                ("rep_min_tokens", ctypes.c_int32), ("rep_max_ngram", ctypes.c_int32),
                ("end", ctypes.c_int32), ("steps", ctypes.c_int32), ("rows", ctypes.c_int32),
                ("decode_rc", ctypes.c_int32), ("reserved", ctypes.c_int32), ("llama_ns", ctypes.c_int64)]


_state: dict = {}


def mode() -> str:
    """'c', 'python' or 'auto', from ASRGGUF_DECODE_LOOP."""
    m = os.environ.get("ASRGGUF_DECODE_LOOP", "auto").strip().lower() or "auto"
    if m not in ("auto", "c", "python"):
        raise AsrggufError(f"ASRGGUF_DECODE_LOOP={m!r}: expected c, python or auto")
    return m


def find_library() -> Path | None:
    """ASRGGUF_DECODE_LOOP_LIB, else the copy inside the package (asrgguf/_native/)."""
    return packaged_library(LIB_NAME, "ASRGGUF_DECODE_LOOP_LIB")


def _open(path: Path):
    from .llama_bindings import bindings

    L = bindings()

    lib = ctypes.CDLL(str(path))
    lib.asrgguf_loop_version.restype = ctypes.c_int
    if lib.asrgguf_loop_version() != VERSION:
        raise OSError(f"version {lib.asrgguf_loop_version()}, expected {VERSION} (rebuild: tools/build_native.sh)")
    sizes = (ctypes.c_int32 * 3)()
    lib.asrgguf_loop_sizes(sizes)
    want = (ctypes.sizeof(Seq), ctypes.sizeof(Args), ctypes.sizeof(L.llama_batch))
    if tuple(sizes) != want:
        raise OSError(f"struct sizes {tuple(sizes)}, expected {want} (built against another llama.h?)")
    lib.asrgguf_loop_run.restype = ctypes.c_int32
    lib.asrgguf_loop_run.argtypes = [ctypes.POINTER(Args), ctypes.POINTER(Seq), ctypes.c_int32]
    lib.asrgguf_loop_argmax.restype = ctypes.c_int32
    lib.asrgguf_loop_argmax.argtypes = [ctypes.c_void_p, ctypes.c_int32]
    lib.asrgguf_loop_is_repeating.restype = ctypes.c_int32
    lib.asrgguf_loop_is_repeating.argtypes = [ctypes.c_void_p] + [ctypes.c_int32] * 4
    fns = {name: ctypes.cast(getattr(L._lib, name), ctypes.c_void_p).value
           for name in ("llama_decode", "llama_get_logits_ith")}
    return lib, fns


def library():
    """(ctypes library, llama.cpp function pointers) or None; the reason is in status()."""
    if "lib" not in _state:
        path = find_library()
        if path is None or not path.is_file():
            _state.update(lib=None, reason=f"not built ({path or 'asrgguf/_native/' + LIB_NAME} missing; "
                                           f"tools/build_native.sh)")
        else:
            try:
                _state.update(lib=_open(path), reason="", path=str(path))
            except (OSError, AttributeError) as e:
                _state.update(lib=None, reason=f"could not load {path}: {e}")
    return _state["lib"]


def status() -> dict:
    """Which loop `Batcher` uses: {'loop': 'c' | 'python', 'reason': why not C}."""
    m = mode()
    if m == "python":
        return {"loop": "python", "reason": "ASRGGUF_DECODE_LOOP=python"}
    if library() is None:
        return {"loop": "python", "reason": _state["reason"]}
    return {"loop": "c", "path": _state["path"]}


def for_decoder(decoder, stop_ids, repeat: tuple[int, int, int] = (0, 0, 0)) -> "Loop | None":
    """The C loop for this decoder, or None for the Python loop (ASRGGUF_DECODE_LOOP, a missing build);
    ASRGGUF_DECODE_LOOP=c and no library: AsrggufError. repeat: the repetition guard's thresholds (count,
    tokens, longest n-gram: generate.REPEAT_*)."""
    m = mode()
    if m == "python":
        return None
    if library() is None:
        if m == "c":
            raise AsrggufError(f"ASRGGUF_DECODE_LOOP=c: the decode loop in C is {_state['reason']}")
        return None
    return Loop(decoder, stop_ids, repeat)


def argmax(x: np.ndarray) -> int:
    """The library's argmax (tests compare it with numpy's)."""
    x = np.ascontiguousarray(x, np.float32)
    return int(library()[0].asrgguf_loop_argmax(x.ctypes.data, len(x)))


def is_repeating(ids, min_count: int, min_tokens: int, max_ngram: int) -> bool:
    """The library's repetition check (tests compare it with generate.is_repeating)."""
    a = np.ascontiguousarray(ids, np.int32)
    return bool(library()[0].asrgguf_loop_is_repeating(a.ctypes.data, len(a), min_count, min_tokens, max_ngram))


class Loop:
    """Greedy steps of one decoder's sequences in C."""

    def __init__(self, decoder, stop_ids, repeat: tuple[int, int, int]):
        self._lib, fns = library()
        self.decoder = decoder
        self._stop = np.array(sorted(stop_ids), np.int32)
        self._flag = ctypes.c_int32(0)
        a = Args()
        a.decode, a.get_logits_ith = fns["llama_decode"], fns["llama_get_logits_ith"]
        a.stop_ids, a.n_stop = self._stop.ctypes.data, len(self._stop)
        a.interrupt = ctypes.addressof(self._flag)
        a.rep_min_count, a.rep_min_tokens, a.rep_max_ngram = repeat
        self._args = a
        self.llama_s = 0.0   # wall time inside llama_decode over the loop's life (bench/decode_loop.py)

    def interrupt(self) -> None:
        """Make a running `run` return after its current step (any thread)."""
        self._flag.value = 1

    def clear_interrupt(self) -> None:
        self._flag.value = 0

    def run(self, jobs, max_steps: int | None = None, max_seconds: float | None = None) -> tuple:
        """Greedy steps for `jobs` (generate.Job, each with a pending token) until one finishes, max_steps
        (STEPS), max_seconds (SECONDS) or an interrupt. Updates each job (ids, position, pending token, decode_s,
        repetition_stopped) and returns (the finished jobs, steps, rows, seconds, error): error is None, or the
        AsrggufError of a failed llama_decode (the jobs updated up to it)."""
        dec = self.decoder
        if not dec.ctx:
            raise AsrggufError(f"{dec.path}: no llama.cpp context (creating one failed earlier)")
        a = self._args
        a.ctx, a.n_vocab, a.n_pos = dec.ctx, dec.n_vocab, dec.n_pos
        a.max_steps = max(1, int(STEPS if max_steps is None else max_steps))
        a.max_ns = max(0, int((SECONDS if max_seconds is None else max_seconds) * 1e9))
        seqs = (Seq * len(jobs))()
        bufs = []
        for s, j in zip(seqs, jobs):
            buf = np.empty(max(j.max_new_tokens, len(j.ids) + 1), np.int32)
            buf[:len(j.ids)] = j.ids
            bufs.append(buf)
            s.seq_id, s.pos, s.next, s.n_ids, s.cap = j._seq, j._pos, j._next, len(j.ids), len(buf)
            s.max_new, s.ids = j.max_new_tokens, buf.ctypes.data
            s.flags = (FLAG_EXACT if j.exact_tokens else 0) | (FLAG_GUARD if j.repetition_guard else 0)
        t0 = time.perf_counter()
        end = self._lib.asrgguf_loop_run(ctypes.byref(a), seqs, len(jobs))
        seconds = time.perf_counter() - t0
        self.llama_s += a.llama_ns * 1e-9
        done = []
        for s, j, buf in zip(seqs, jobs, bufs):
            j.ids.extend(buf[len(j.ids):s.n_ids].tolist())
            j._pos, j._next = s.pos, s.next
            j.decode_s += s.decode_ns * 1e-9
            if s.state != SEQ_GOING:
                j.repetition_stopped = s.state == SEQ_REPEATING
                done.append(j)
        err = None
        if end == END_DECODE_FAILED:   # the message of decoder.Decoder._decode
            from .decoder import last_llama_error

            rc = a.decode_rc
            err = AsrggufError(f"llama_decode failed (code {rc}): "
                               + ("the context is full" if rc == 1 else last_llama_error() or "see llama.cpp log"))
        elif end in (END_NO_LOGITS, END_NO_MEMORY):
            err = AsrggufError("the decode loop in C failed: " + ("llama.cpp returned no logits"
                                                                  if end == END_NO_LOGITS else "out of memory"))
        return done, a.steps, a.rows, seconds, err
