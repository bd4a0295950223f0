"""The native backend's repack cache (asrgguf/repack_cache.py, native/repack_cache.cpp): a second load maps the
weights the first one repacked, gives back the GGUF's bytes and the same logits; a file that is corrupt, torn
or made for another GGUF (stale) is never used as it is: the load repacks and writes it anew.

The reference for the weights is the GGUF file itself (read with gguf-py), for the logits a run that repacked
from the GGUF (no cache) and llama.cpp's own products."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_native import PROBE, ROOT, kernels, native_lib, probe, rel_l2  # noqa: F401  (fixtures)

HEADER = 64 << 10


@pytest.fixture()
def q8(ck_gqa, gguf_pair, tmp_path) -> Path:
    """A private copy of the tiny q8_0 decoder (the tests change its mtime)."""
    dec, _ = gguf_pair(ck_gqa, "q8_0")
    return Path(shutil.copy(dec, tmp_path / "dec-q8_0.gguf"))


def run(gguf: Path, tmp: Path, name: str, **env) -> dict:
    return probe(gguf, tmp / f"{name}.npy", "default", {"ASRGGUF_CACHE": str(tmp / "cache"), **env})


def cache_file(tmp: Path) -> Path:
    files = list((tmp / "cache" / "native").glob("*.repack"))
    assert len(files) == 1, files
    return files[0]


def file_weights(gguf: Path) -> dict:
    from gguf import GGUFReader

    return {t.name: hashlib.sha256(np.asarray(t.data).tobytes()).hexdigest()
            for t in GGUFReader(gguf).tensors if t.tensor_type.name == "Q8_0"}


def test_second_load_maps_the_cache_and_gives_back_the_files_bytes(q8, tmp_path, kernels):
    ref = probe(q8, tmp_path / "ref.npy", "off")
    first = run(q8, tmp_path, "first")
    assert first["native"]["used"] and first["native"]["cache"] == "written", first["native"]
    size = cache_file(tmp_path).stat().st_size
    second = run(q8, tmp_path, "second", ASRGGUF_NATIVE_ISA="avx2")   # the layout is the same on both paths
    assert second["native"]["cache"] == "hit", second["native"]
    assert second["native"]["weights"] == first["native"]["weights"] == 15
    assert cache_file(tmp_path).stat().st_size == size
    # every weight read back through the backend (unpacked from the mapped file) is the GGUF's bytes
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASRGGUF_N")}
    env.update(ASRGGUF_CACHE=str(tmp_path / "cache"), PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, str(PROBE), str(q8), str(tmp_path / "x.npy"), "--weights", "--steps", "1"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    assert got["native"]["cache"] == "hit"
    want = file_weights(q8)
    assert len(got["weights"]) == 15 and got["weights"] == {k: want[k] for k in got["weights"]}
    assert set(want) - set(got["weights"]) == {"token_embd.weight"}   # GET_ROWS stays with llama.cpp
    # same products as the run that repacked from the GGUF, and llama.cpp's own within the backend's tolerance
    assert np.array_equal(second["logits"], first["logits"])
    assert second["ids"] == first["ids"] == ref["ids"]
    assert rel_l2(second["logits"], ref["logits"]) < 1e-4


@pytest.mark.parametrize("damage", ["data", "truncated", "key", "stale-gguf"])
def test_damaged_or_stale_cache_is_rebuilt_never_used(q8, tmp_path, kernels, damage):
    first = run(q8, tmp_path, "first")
    assert first["native"]["cache"] == "written"
    f = cache_file(tmp_path)
    size = f.stat().st_size
    if damage == "data":          # bytes in the middle of a weight: found by the checksums
        with open(f, "r+b") as h:
            h.seek(HEADER + (size - HEADER) // 2)
            b = h.read(16)
            h.seek(HEADER + (size - HEADER) // 2)
            h.write(bytes(x ^ 0x5A for x in b))
        expect = "rebuilt"
    elif damage == "truncated":   # a torn write
        os.truncate(f, size - 4096)
        expect = "written"
    elif damage == "key":         # the header's description of the GGUF
        with open(f, "r+b") as h:
            h.seek(40)
            c = h.read(1)
            h.seek(40)
            h.write(bytes([c[0] ^ 1]))
        expect = "written"
    else:                         # the GGUF changed since (its mtime)
        st = q8.stat()
        os.utime(q8, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        expect = "written"
    again = run(q8, tmp_path, "again")
    assert again["native"]["cache"] == expect, again["native"]
    assert np.array_equal(again["logits"], first["logits"]) and again["ids"] == first["ids"]
    assert cache_file(tmp_path).stat().st_size == size   # written whole again, in its place
    third = run(q8, tmp_path, "third")
    assert third["native"]["cache"] == "hit"
    assert np.array_equal(third["logits"], first["logits"])


def test_cache_off_by_environment(q8, tmp_path, kernels):
    got = run(q8, tmp_path, "off", ASRGGUF_NATIVE_NO_CACHE="1")
    assert got["native"]["used"] and got["native"]["cache"] == "off"
    assert not (tmp_path / "cache" / "native").exists() or not list((tmp_path / "cache" / "native").iterdir())
