"""Ending the `asrgguf` process without the interpreter's teardown, once nothing anyone could see is left to do."""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import sys
import threading


def exit_now(code) -> None:
    """End the process at once with `code` (an int or None), once everything a normal exit does that anyone
    could see is done: standard streams flushed (Python's and C's), atexit handlers run (Ray's, multiprocessing's), no other
    non-daemon Python thread left. Skipped is the interpreter's teardown (modules, torch's and llama.cpp's
    objects and their C++ destructors): 0.15 s of a 5-s clip's run on 2 cores (docs/benchmarks.md). Returns
    (and the caller exits normally) when any of that does not hold."""
    if not (code is None or isinstance(code, int)) or threading.current_thread() is not threading.main_thread():
        return
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):   # a closed or broken stream: the normal exit reports it
        return
    atexit._run_exitfuncs()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    with contextlib.suppress(OSError, AttributeError):   # C stdio buffers (a native library's printf)
        ctypes.CDLL(None).fflush(None)
    os._exit(code or 0)
