"""Packaging hook: builds asrgguf's native ggml backend (native/, CMakeLists.txt) into the wheel as
asrgguf/_native/libasrgguf_native.so when CMake, a C++ compiler with OpenMP and ggml's headers are at
hand. ggml's headers come from the pinned llama-cpp-python source distribution through
tools/llama_cpp_src.py: ASRGGUF_LLAMA_CPP_SRC (its vendor/llama.cpp), else .cache/llama-cpp-python-src,
fetched there once with `pip download`. Without any of this asrgguf installs as before and runs on
llama.cpp's own products (ASRGGUF_NATIVE_BUILD=0 skips the build and ships no library, =1 makes a failed build an error). Off x86-64
Linux (ARM Linux, macOS) the build is skipped as with =0."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

ROOT = Path(__file__).resolve().parent


def _ggml_src() -> Path:
    """vendor/llama.cpp of the pinned sdist: tools/llama_cpp_src.py (ASRGGUF_LLAMA_CPP_SRC, else the project's
    .cache/, filled once), loaded by path: the build environment has nothing else."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("llama_cpp_src", ROOT / "tools" / "llama_cpp_src.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.source_dir(ROOT)   # the installed llama-cpp-python's version, else pyproject.toml's pin


def build_native(dest: Path) -> None:
    cmake = shutil.which("cmake")
    if not cmake:
        raise RuntimeError("cmake not found")
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        src = _ggml_src()
        subprocess.run([cmake, "-S", str(ROOT), "-B", str(tmp / "build"), f"-DLLAMA_CPP_SRC={src}",
                        "-DCMAKE_BUILD_TYPE=Release"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([cmake, "--build", str(tmp / "build"), "-j", "2"], check=True, stdout=subprocess.DEVNULL)
        dest.mkdir(parents=True, exist_ok=True)
        for lib in ("libasrgguf_native.so", "libasrgguf_loop.so"):   # the backend, the decode loop in C
            shutil.copy2(tmp / "build" / lib, dest / lib)


def native_wanted() -> bool:
    """The native backend has x86-64 kernels only (AVX2, AVX-512 VNNI) and is loaded on Linux: elsewhere
    (ARM Linux, macOS) the package installs without it and llama.cpp's own products are used."""
    return (os.environ.get("ASRGGUF_NATIVE_BUILD", "auto") != "0" and sys.platform.startswith("linux")
            and platform.machine().lower() in ("x86_64", "amd64"))


class BuildPy(build_py):
    def run(self):
        super().run()
        mode = os.environ.get("ASRGGUF_NATIVE_BUILD", "auto")
        if not native_wanted():
            # a library built earlier into the source tree (tools/build_native.sh) is package data: not shipped
            for so in (Path(self.build_lib) / "asrgguf" / "_native").glob("*.so"):
                so.unlink()
            return
        # editable installs (pip install -e .) import the source tree: build into it (gitignored)
        dest = (ROOT if getattr(self, "editable_mode", False) else Path(self.build_lib)) / "asrgguf" / "_native"
        try:
            build_native(dest)
        except Exception as e:  # optional: asrgguf runs on llama.cpp's own products without it
            if mode == "1":
                raise
            print(f"asrgguf: native backend not built ({e}); llama.cpp's own products will be used", file=sys.stderr)


class PlatformDistribution(Distribution):
    """The wheel may hold a compiled library: tag it for the platform, not py3-none-any."""

    def has_ext_modules(self):
        return native_wanted()


setup(cmdclass={"build_py": BuildPy}, distclass=PlatformDistribution)
