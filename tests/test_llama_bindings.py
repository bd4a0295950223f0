"""`llama_bindings.bindings()`: llama-cpp-python's ctypes bindings without its package `__init__` (no jinja2,
diskcache or the high-level `Llama` imported), and the whole package there at its first other use."""
import subprocess
import sys


def test_bindings_skip_the_package_init_until_it_is_used():
    code = ("import sys, importlib.metadata as md\n"
            "from asrgguf.llama_bindings import bindings\n"
            "L = bindings()\n"
            "assert L is sys.modules['llama_cpp.llama_cpp'] and bindings() is L\n"
            "assert L.llama_max_devices() >= 1\n"
            "print(sorted(m for m in ('llama_cpp.llama', 'jinja2', 'diskcache') if m in sys.modules))\n"
            "import llama_cpp\n"
            "from llama_cpp import Llama\n"
            "print(llama_cpp.__version__ == md.version('llama-cpp-python'), Llama.__module__,\n"
            "      llama_cpp.llama_cpp is L, llama_cpp.llama_backend_init is L.llama_backend_init)\n"
            "try:\n    llama_cpp.no_such_name\nexcept AttributeError as e:\n    print('AttributeError', e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["[]", "True llama_cpp.llama True True",
                                     "AttributeError module 'llama_cpp' has no attribute 'no_such_name'"], r.stdout


def test_bindings_after_a_full_import_are_the_package_s():
    code = ("import llama_cpp, llama_cpp.llama_cpp\n"
            "from asrgguf.llama_bindings import bindings\n"
            "print(bindings() is llama_cpp.llama_cpp, hasattr(llama_cpp, 'Llama'))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split() == ["True", "True"], (r.stdout, r.stderr)
