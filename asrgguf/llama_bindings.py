"""llama-cpp-python's ctypes bindings (`llama_cpp.llama_cpp`), imported without its package's `__init__`.

That `__init__` also imports the high-level `Llama` class and with it jinja2, diskcache and sqlite3: 0.06-0.09 s
of Python work asrgguf never uses, done in the decoder's loading thread while the main thread imports torch, so
both wait on one interpreter lock (docs/benchmarks.md, the 5-s clip). The package module is created from its
spec without running its `__init__`; the first use of any other name of the package (`llama_cpp.Llama`,
`llama_cpp.__version__`, ...) runs it then (PEP 562 module `__getattr__`), so later users see the whole package.
"""
from __future__ import annotations

import importlib.util
import sys
import threading

from .errors import AsrggufError

_LOCK = threading.Lock()


def bindings():
    """The `llama_cpp.llama_cpp` module (libllama loaded)."""
    mod = sys.modules.get("llama_cpp.llama_cpp")
    if mod is not None:
        return mod
    with _LOCK:
        if "llama_cpp" not in sys.modules:
            spec = importlib.util.find_spec("llama_cpp")
            if spec is None or spec.loader is None:
                raise AsrggufError("llama-cpp-python is not installed (pip install llama-cpp-python)")
            pkg = importlib.util.module_from_spec(spec)
            pkg.__getattr__ = _completing(pkg, spec)
            sys.modules["llama_cpp"] = pkg
        import llama_cpp.llama_cpp as L
    return L


def _completing(pkg, spec):
    done = []

    def __getattr__(name: str):
        with _LOCK:
            if not done:
                done.append(True)
                del pkg.__getattr__
                spec.loader.exec_module(pkg)   # the package's own __init__, once
        return pkg.__dict__[name] if name in pkg.__dict__ else object.__getattribute__(pkg, name)
    return __getattr__
