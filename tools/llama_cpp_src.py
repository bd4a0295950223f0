"""llama.cpp's sources as the pinned llama-cpp-python sdist carries them (ggml's headers for native/, llama.cpp's
converter for the tests), fetched once into a cache and reused: the one place setup.py, tools/build_native.sh and
.ci/run get them from.

    python3 tools/llama_cpp_src.py [--root DIR] [--timeout S]     # prints the vendor/llama.cpp directory

Where: ASRGGUF_LLAMA_CPP_SRC when set (used as it is, never downloaded into); else DIR/.cache/llama-cpp-python-src
(DIR: the project root), filled on first use with `pip download --no-deps --no-binary :all:
llama-cpp-python==VERSION` (one deadline for all tries, ASRGGUF_FETCH_TIMEOUT seconds, 900 by default) unless
ASRGGUF_LLAMA_CPP_SDIST names an sdist already downloaded. A cache holding that version is used without any
network access. VERSION: the installed llama-cpp-python's, else the pin in pyproject.toml.
Standard library only (setup.py loads it by path, in a build environment that may lack everything else).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = Path("ggml") / "src" / "ggml-backend-impl.h"   # what native/ needs; present means extracted whole
STAMP = ".asrgguf-version"


class FetchError(RuntimeError):
    pass


def pinned_version(root: Path = ROOT) -> str:
    """The llama-cpp-python version: the installed one (the ABI native/ must match), else pyproject.toml's pin."""
    try:
        import importlib.metadata as md

        return md.version("llama-cpp-python")
    except Exception:  # noqa: BLE001 - not installed (an isolated build environment)
        pass
    m = re.search(r'"llama-cpp-python==([^"]+)"', (root / "pyproject.toml").read_text())
    if not m:
        raise FetchError(f"{root / 'pyproject.toml'}: no llama-cpp-python==VERSION pin")
    return m.group(1)


def _pip_download(version: str, dest: Path, timeout: float) -> Path:
    """The sdist downloaded into dest by pip (this interpreter's, else pip3/pip on PATH: isolated builds carry no
    pip module), all tries within one deadline."""
    args = ["download", "-q", "--no-deps", "--no-binary", ":all:", f"llama-cpp-python=={version}", "-d", str(dest)]
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONNOUSERSITE", "PYTHONHOME")}
    tries = [([sys.executable, "-m", "pip", *args], None)]
    tries += [([shutil.which(n), *args], clean) for n in ("pip3", "pip") if shutil.which(n)]
    deadline = time.monotonic() + timeout
    err = "no pip"
    for cmd, env in tries:
        left = deadline - time.monotonic()
        if left <= 0:
            err = f"no answer within {timeout:.0f} s"
            break
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=left, env=env)
        except subprocess.TimeoutExpired:
            err = f"no answer within {timeout:.0f} s"
            break
        found = sorted(dest.glob("llama_cpp_python-*.tar.gz"))
        if r.returncode == 0 and found:
            return found[0]
        err = (r.stderr.strip().splitlines() or ["?"])[-1]
    raise FetchError(f"pip download llama-cpp-python=={version} (sdist) failed: {err}")


def source_dir(root: Path = ROOT, version: str | None = None, timeout: float | None = None) -> Path:
    """vendor/llama.cpp of the pinned sdist, downloaded and extracted at most once (see the module's docstring)."""
    env = os.environ.get("ASRGGUF_LLAMA_CPP_SRC")
    if env:
        if not (Path(env) / HEADER).is_file():
            raise FetchError(f"ASRGGUF_LLAMA_CPP_SRC={env}: not llama.cpp's sources ({HEADER} missing)")
        return Path(env)
    version = version or pinned_version(root)
    cache = root / ".cache" / "llama-cpp-python-src"
    src = cache / "vendor" / "llama.cpp"
    stamp = cache / STAMP
    # a cache without a stamp was extracted by the scripts before this one, from the same pin
    if (src / HEADER).is_file() and (not stamp.is_file() or stamp.read_text().strip() == version):
        return src
    if timeout is None:
        timeout = float(os.environ.get("ASRGGUF_FETCH_TIMEOUT", "900"))
    cache.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache.parent, prefix=".llama-cpp-src.") as t:
        tmp = Path(t)
        given = os.environ.get("ASRGGUF_LLAMA_CPP_SDIST")
        sdist = Path(given) if given else _pip_download(version, tmp, timeout)
        out = tmp / "src"
        with tarfile.open(sdist) as tf:
            tops = {m.name.split("/", 1)[0] for m in tf.getmembers()}
            if len(tops) != 1:
                raise FetchError(f"{sdist}: not a llama-cpp-python sdist (no single top directory)")
            tf.extractall(out, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(out)
        top = out / tops.pop()
        if not (top / "vendor" / "llama.cpp" / HEADER).is_file():
            raise FetchError(f"{sdist}: no vendor/llama.cpp/{HEADER} inside")
        (top / STAMP).write_text(version + "\n")
        if cache.exists():   # another version, or a half-extracted copy of an older script
            shutil.rmtree(cache)
        top.rename(cache)     # whole or not at all: a killed fetch leaves only the temporary directory
    return src


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=ROOT, help="project root whose .cache/ holds the sources")
    ap.add_argument("--timeout", type=float, default=None, help="seconds for the download, all tries together")
    a = ap.parse_args()
    try:
        print(source_dir(a.root.resolve(), timeout=a.timeout))
    except (FetchError, OSError, tarfile.TarError) as e:
        print(f"llama_cpp_src: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
