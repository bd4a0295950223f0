"""tools/llama_cpp_src.py, the one fetch of llama.cpp's sources (setup.py, tools/build_native.sh, .ci/run): the
sdist is downloaded once into the cache, and a cache present is used without touching the network.

The download is pip's (`python -m pip download ...`); here a stand-in `pip` module, first on PYTHONPATH, records
each call and writes a small sdist of the same layout, so the test counts downloads without a network."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "llama_cpp_src.py"
VERSION = "0.3.36"

FAKE_PIP = r'''
import io, sys, tarfile
from pathlib import Path
args = sys.argv[1:]
with open(LOG, "a") as f:
    f.write(" ".join(args) + "\n")
dest = Path(args[args.index("-d") + 1])
top = "llama_cpp_python-{v}/".format(v=args[[a.startswith("llama-cpp-python==") for a in args].index(True)].split("==")[1])
with tarfile.open(dest / (top[:-1] + ".tar.gz"), "w:gz") as tf:
    for name, text in (("vendor/llama.cpp/ggml/src/ggml-backend-impl.h", "// ggml\n"),
                       ("vendor/llama.cpp/convert_hf_to_gguf.py", "# converter\n")):
        data = text.encode()
        info = tarfile.TarInfo(top + name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
'''


def _fake_pip(tmp: Path) -> tuple[Path, Path]:
    log = tmp / "pip-calls.log"
    mod = tmp / "fakepip" / "pip"
    mod.mkdir(parents=True)
    (mod / "__init__.py").write_text("")
    (mod / "__main__.py").write_text(f"LOG = {str(log)!r}\n" + FAKE_PIP)
    return tmp / "fakepip", log


def _run(root: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root), "--timeout", "60"], capture_output=True,
                          text=True, timeout=120, env=env)


def _offline(env: dict) -> dict:
    """Any network access fails at once: an index and proxies nobody listens on, no retries."""
    dead = "http://127.0.0.1:9"
    return {**env, "PIP_INDEX_URL": f"{dead}/simple", "PIP_RETRIES": "0", "PIP_TIMEOUT": "2", "http_proxy": dead,
            "https_proxy": dead, "HTTP_PROXY": dead, "HTTPS_PROXY": dead, "PATH": "/usr/bin:/bin"}


def test_fetched_once_then_used_offline(tmp_path):
    fake, log = _fake_pip(tmp_path)
    root = tmp_path / "project"
    root.mkdir()
    (root / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("ASRGGUF_LLAMA_CPP_SRC", "ASRGGUF_LLAMA_CPP_SDIST")}
    env["PYTHONPATH"] = str(fake)
    want = root / ".cache" / "llama-cpp-python-src" / "vendor" / "llama.cpp"

    r = _run(root, env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(want)
    assert (want / "convert_hf_to_gguf.py").read_text() == "# converter\n"   # the whole sdist, not the headers only
    calls = log.read_text().splitlines()
    assert calls == [f"download -q --no-deps --no-binary :all: llama-cpp-python=={VERSION} -d {calls[0].split()[-1]}"]
    assert not list((root / ".cache").glob(".llama-cpp-src.*"))   # its temporary directory is gone

    # again, offline and with the stand-in pip gone: the cache answers, nothing is downloaded
    r = _run(root, _offline({k: v for k, v in env.items() if k != "PYTHONPATH"}))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(want) and len(log.read_text().splitlines()) == 1

    # control: without the cache, the same offline call does try the network, and fails in one line
    (want / "ggml" / "src" / "ggml-backend-impl.h").unlink()
    r = _run(root, _offline({k: v for k, v in env.items() if k != "PYTHONPATH"}))
    assert r.returncode == 1 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"llama_cpp_src: error: pip download llama-cpp-python=={VERSION} (sdist) failed: "), r.stderr


def test_a_given_source_is_used_as_it_is(tmp_path):
    src = tmp_path / "llama.cpp"
    (src / "ggml" / "src").mkdir(parents=True)
    env = _offline({k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    r = _run(tmp_path, {**env, "ASRGGUF_LLAMA_CPP_SRC": str(src)})
    assert r.returncode == 1 and r.stderr.splitlines() == [
        f"llama_cpp_src: error: ASRGGUF_LLAMA_CPP_SRC={src}: not llama.cpp's sources "
        f"(ggml/src/ggml-backend-impl.h missing)"], r.stderr
    (src / "ggml" / "src" / "ggml-backend-impl.h").write_text("")
    r = _run(tmp_path, {**env, "ASRGGUF_LLAMA_CPP_SRC": str(src)})
    assert r.returncode == 0 and r.stdout.strip() == str(src), r.stderr
    assert not (tmp_path / ".cache").exists()   # nothing fetched, nothing cached
