"""The native backend's repack cache: its repacked q8_0 weights of a decoder GGUF kept in a file, so a later
load maps them (file-backed pages, read as used) instead of repacking the GGUF again (native/repack_cache.h).

One file per decoder GGUF in the cache directory (`cache_dir.default_cache_dir()/native/`), named by the GGUF's
absolute path. Its key describes the GGUF (size, mtime, a SHA-256 of its first 8 MiB, where the header and
tensor table lie) and the library (its size and mtime, its weight layout and flags, llama.cpp's version):
a file made for anything else is never used. The backend checks a used file as the weights come in
(checksums per MiB, a sample of each weight repacked again) and repacks any weight that differs; the file is
then written anew. Files are written to a temporary name beside their place and renamed (never half a file).
Off with ASRGGUF_NATIVE_NO_CACHE=1.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

STATES = {0: "none", 1: "hit", 2: "miss", 3: "stale"}
HEAD_BYTES = 8 << 20


def disabled() -> bool:
    return os.environ.get("ASRGGUF_NATIVE_NO_CACHE", "").strip() not in ("", "0")


def cache_path(gguf: str | Path) -> Path:
    from .cache_dir import default_cache_dir

    p = Path(gguf).resolve()
    tag = hashlib.sha256(str(p).encode()).hexdigest()[:16]
    return default_cache_dir() / "native" / f"{p.stem}-{tag}.repack"


def key(gguf: str | Path, lib_path: str, layout: str) -> str:
    import importlib.metadata as md

    st = os.stat(gguf)
    h = hashlib.sha256()
    buf = bytearray(64 << 10)   # small reads: one 8-MiB read would raise glibc's mmap threshold for the run
    with open(gguf, "rb") as f:
        left = HEAD_BYTES
        while left > 0:
            n = f.readinto(memoryview(buf)[:min(left, len(buf))])
            if not n:
                break
            h.update(memoryview(buf)[:n])
            left -= n
    ls = os.stat(lib_path)
    return (f"gguf size={st.st_size} mtime_ns={st.st_mtime_ns} head_sha256={h.hexdigest()}\n"
            f"lib size={ls.st_size} mtime_ns={ls.st_mtime_ns} {layout}\n"
            f"llama-cpp-python={md.version('llama-cpp-python')}")


def begin(lib, gguf: str | Path, lib_path: str) -> Path | None:
    """Name the cache file and key for the next load (None: off, or the cache directory unusable)."""
    if disabled():
        return None
    path = cache_path(gguf)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    lib.asrgguf_native_cache_begin(str(path).encode(), key(gguf, lib_path, lib.asrgguf_native_layout().decode()).encode())
    return path


def finish(lib, path: Path | None) -> str:
    """After the load: 'hit' (the file was used), 'written' (none was valid: a new one is in place), 'rebuilt'
    (a used file differed from the GGUF: written anew), 'none' (no weights for the backend), 'off', or
    'not written: REASON'."""
    if path is None:
        return "off"
    state = STATES.get(lib.asrgguf_native_cache_end(), "none")
    if state in ("none", "hit"):
        return state
    from .files import clean_stale, temp_beside

    try:
        clean_stale(path)
        fd, tmp = temp_beside(path)
    except OSError as e:
        return f"not written: {e.strerror}"
    try:
        rc = lib.asrgguf_native_cache_write(fd)   # no fsync: a file torn by a crash fails its checksums
        os.close(fd)
        if rc != 0:
            raise OSError(rc, os.strerror(rc))
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        return f"not written: {e.strerror}"
    return "written" if state == "miss" else "rebuilt"
