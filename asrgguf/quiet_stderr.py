"""C's `stderr` silenced around libsndfile reads, thread-safe, file descriptor 2 untouched."""
from __future__ import annotations

import contextlib
import os
import threading


class _QuietCStderr:
    """libsndfile's mp3 decoder (libmpg123) prints notes about junk input with C's `stderr` FILE*. While any
    thread reads through libsndfile, C's `stderr` points at /dev/null; file descriptor 2, which Python, the
    server's log and tracebacks write to, is never touched. A count under a lock makes nested and
    concurrent reads restore the real stream exactly once (the last one out)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._depth = 0
        self._ptr = self._null = self._real = None
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            for sym in ("stderr", "__stderrp"):   # glibc / musl, macOS
                with contextlib.suppress(ValueError):
                    self._ptr = ctypes.c_void_p.in_dll(libc, sym)
                    break
            libc.fopen.restype = ctypes.c_void_p
            libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
            if self._ptr is not None:
                self._null = libc.fopen(os.devnull.encode(), b"w") or None
        except (OSError, AttributeError):
            self._ptr = None

    def __enter__(self):
        if self._ptr is None or self._null is None:
            return self
        with self._lock:
            if self._depth == 0:
                self._real = self._ptr.value
                self._ptr.value = self._null
            self._depth += 1
        return self

    def __exit__(self, *exc):
        if self._ptr is None or self._null is None:
            return
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._ptr.value = self._real


_QUIET = _QuietCStderr()


def quiet_c_stderr() -> _QuietCStderr:
    """The process's one silencer (a context manager; nested and concurrent uses are safe)."""
    return _QUIET
