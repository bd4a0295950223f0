"""asrgguf's native ggml backend (native/, built by CMakeLists.txt or tools/build_native.sh).

A shared library that registers an ACCEL device with ggml: llama.cpp then places the q8_0 weights of
the decoder's matrix products in its buffers (repacked at load) and runs those products on it, every
other op staying on llama.cpp's CPU backend. It must be registered before the decoder loads, through
the `libggml.so.0` that libllama links (llama-cpp-python's lib/ holds separate copies of libggml; a
backend registered through another copy lands in a registry llama.cpp never sees).

Off with ASRGGUF_NO_NATIVE=1 (the CLI's --no-native); ASRGGUF_NATIVE_LIB=path picks another build;
ASRGGUF_NATIVE_ISA=avx2 forces the AVX2 kernels on an AVX-512 VNNI machine, =none behaves as a CPU without
AVX2 (tests). A missing or failing library
leaves llama.cpp's own products (the reason is kept in `status()`), never an error.
The backend drops llama.cpp's mapped pages of each weight it repacks, so no weight is resident twice
(ASRGGUF_NATIVE_KEEP_SOURCE=1 keeps them, for measuring; docs/memory.md). The repacked weights are kept
in a cache file that later loads map instead of repacking (asrgguf/repack_cache.py; ASRGGUF_NATIVE_NO_CACHE=1).
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

LIB_NAME = "libasrgguf_native.so"
ISA_NAMES = {0: "none", 1: "avx2", 2: "avx512vnni"}

_state: dict = {"loaded": False, "reason": "not loaded yet"}
_lib = None


def disabled() -> bool:
    return os.environ.get("ASRGGUF_NO_NATIVE", "").strip() not in ("", "0")


def packaged_library(name: str, env: str) -> Path | None:
    """The library named by the environment variable `env`, else the copy of `name` inside the package
    (asrgguf/_native/), else None."""
    given = os.environ.get(env)
    if given:
        return Path(given)
    p = Path(__file__).resolve().parent / "_native" / name
    return p if p.is_file() else None


def find_library() -> Path | None:
    """ASRGGUF_NATIVE_LIB, else the copy inside the package (asrgguf/_native/)."""
    return packaged_library(LIB_NAME, "ASRGGUF_NATIVE_LIB")


def _libggml() -> ctypes.CDLL:
    """The libggml.so.0 libllama links (already loaded by llama_cpp; same handle)."""
    from .llama_bindings import bindings

    lib_dir = Path(bindings().__file__).resolve().parent / "lib"   # libllama loaded, and with it libggml.so.0
    g = ctypes.CDLL(str(lib_dir / "libggml.so.0"))
    g.ggml_backend_load.restype = ctypes.c_void_p
    g.ggml_backend_load.argtypes = [ctypes.c_char_p]
    g.ggml_backend_reg_dev_count.restype = ctypes.c_size_t
    g.ggml_backend_reg_dev_count.argtypes = [ctypes.c_void_p]
    return g


def load() -> dict:
    """Register the backend with ggml once per process (before the decoder loads). Returns status()."""
    global _lib
    if _state["loaded"] or _state.get("failed"):
        return status()
    if disabled():
        _state["reason"] = "disabled (ASRGGUF_NO_NATIVE)"
        return status()
    path = find_library()
    if path is None or not path.is_file():
        _state.update(reason=f"not built ({path or 'asrgguf/_native/' + LIB_NAME} missing; tools/build_native.sh)")
        return status()
    try:
        lib = ctypes.CDLL(str(path))
        lib.asrgguf_native_isa.restype = ctypes.c_int
        lib.asrgguf_native_set_isa.restype = ctypes.c_int
        lib.asrgguf_native_set_isa.argtypes = [ctypes.c_int]
        lib.asrgguf_native_detected_isa.restype = ctypes.c_int
        lib.asrgguf_native_version.restype = ctypes.c_char_p
        lib.asrgguf_native_stats.argtypes = [ctypes.POINTER(ctypes.c_longlong)]
        lib.asrgguf_native_set_accept.argtypes = [ctypes.c_int]
        if hasattr(lib, "asrgguf_native_released_bytes"):
            lib.asrgguf_native_released_bytes.restype = ctypes.c_longlong
        if hasattr(lib, "asrgguf_native_cache_begin"):   # the repack cache (asrgguf/repack_cache.py)
            lib.asrgguf_native_cache_begin.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
            lib.asrgguf_native_cache_end.restype = ctypes.c_int
            lib.asrgguf_native_cache_write.argtypes = [ctypes.c_int]
            lib.asrgguf_native_cache_write.restype = ctypes.c_int
            lib.asrgguf_native_cached_bytes.restype = ctypes.c_longlong
            lib.asrgguf_native_layout.restype = ctypes.c_char_p
        if lib.asrgguf_native_detected_isa() == 0:
            _state.update(failed=True, reason="the CPU has neither AVX2 nor AVX-512 VNNI")
            return status()
        reg = _libggml().ggml_backend_load(str(path).encode())
    except (OSError, AttributeError) as e:
        _state.update(failed=True, reason=f"could not load {path}: {e}")
        return status()
    if not reg:
        _state.update(failed=True, reason=f"ggml_backend_load refused {path} (ggml API version mismatch?)")
        return status()
    _lib = lib
    _state.update(loaded=True, path=str(path), reason="")
    return status()


def stats() -> dict:
    """Counters of the loaded backend: repacked weights and computed products (zeros when not loaded)."""
    if _lib is None:
        return {"tensors": 0, "bytes": 0, "products": 0, "splits": 0, "seconds": 0.0, "released_bytes": 0}
    a = (ctypes.c_longlong * 5)()
    _lib.asrgguf_native_stats(a)
    rel = getattr(_lib, "asrgguf_native_released_bytes", None)   # absent in builds before 2026-12-03
    return {"tensors": a[0], "bytes": a[1], "products": a[2], "splits": a[3], "seconds": a[4] * 1e-9,
            "released_bytes": int(rel()) if rel is not None else 0}


def cache_begin(gguf: str):
    """Name the repack cache of the decoder about to load (asrgguf/repack_cache.py); returns a token for
    cache_finish."""
    if _lib is None or not hasattr(_lib, "asrgguf_native_cache_begin"):
        return None
    from . import repack_cache

    return repack_cache.begin(_lib, gguf, _state["path"])


def cache_finish(token) -> str:
    """After the load: what the repack cache did ('hit', 'written', 'rebuilt', 'none', 'off', ...)."""
    if _lib is None or token is None:
        return "off"
    from . import repack_cache

    return repack_cache.finish(_lib, token)


def accept(on: bool) -> None:
    """Whether the q8_0 weights of decoders loaded from now on go to the backend (once registered it
    stays registered; weights already in its buffers stay there)."""
    if _lib is not None:
        _lib.asrgguf_native_set_accept(1 if on else 0)


def isa() -> str:
    return ISA_NAMES.get(_lib.asrgguf_native_isa(), "?") if _lib is not None else "none"


def set_isa(name: str) -> str:
    """Force a kernel path ('avx2' or 'avx512vnni', never above what the CPU has); returns the one in use."""
    if _lib is None:
        return "none"
    code = {v: k for k, v in ISA_NAMES.items()}[name]
    return ISA_NAMES[_lib.asrgguf_native_set_isa(code)]


def probe_machine(n_threads: int, mib: int = 640) -> dict:
    """Streaming read bandwidth (GB/s, 1 and n threads), measured by the backend's own code and thread
    pool: the decode roofline. (The compute side is the prefill kernel's own best, from
    bench/native_kernels.py.)"""
    if _lib is None:
        return {}
    _lib.asrgguf_native_probe_read_gbs.restype = ctypes.c_double
    _lib.asrgguf_native_probe_read_gbs.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    return {"read_gbs_1": _lib.asrgguf_native_probe_read_gbs(mib, 1, 5),
            f"read_gbs_{n_threads}": _lib.asrgguf_native_probe_read_gbs(mib, n_threads, 5)}


def status() -> dict:
    s = {"loaded": _state["loaded"]}
    if _state["loaded"]:
        s.update(isa=isa(), path=_state["path"], version=_lib.asrgguf_native_version().decode())
    else:
        s["reason"] = _state["reason"]
    return s
