"""Models by name (`--model Org/Name`, `Transcriber.from_pretrained("Org/Name")`), offline: a tiny checkpoint
placed in the Hugging Face cache's own layout (blobs, snapshots/<commit>/ links, refs/main) under a
temporary HF_HOME with HF_HUB_OFFLINE=1; quantized once into asrgguf's cache."""
from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _hub_cache(home: Path, repo_id: str, ck: Path) -> Path:
    """`ck`'s files as huggingface_hub stores a download: content-addressed blobs, relative links."""
    repo = home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / COMMIT
    (repo / "blobs").mkdir(parents=True)
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    for f in sorted(ck.iterdir()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snap / f.name).symlink_to(os.path.relpath(blob, snap))
    return snap


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
            "ASRGGUF_CACHE": str(tmp_path / "cache")}


def cli(*args, env):
    return subprocess.run([sys.executable, "-m", "asrgguf.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


def test_allow_patterns_cover_what_the_quantizer_reads(ck_gqa):
    from asrgguf.hub import ALLOW_PATTERNS

    wanted = {"config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer_config.json",
              "tokenizer.json", "preprocessor_config.json", "chat_template.jinja", "model.safetensors.index.json",
              "model-00001-of-00002.safetensors", "chat_template.json"}
    assert all(any(fnmatch.fnmatch(n, p) for p in ALLOW_PATTERNS) for n in wanted)
    assert not any(fnmatch.fnmatch(n, p) for p in ALLOW_PATTERNS for n in ("model.bin", "pytorch_model.bin",
                                                                          "README.md", "model.gguf", ".gitattributes"))


def test_model_by_name_offline(ck_gqa, gguf_pair, clip5, tmp_path):
    _hub_cache(tmp_path / "hf", "Org/Tiny", ck_gqa)
    env = _env(tmp_path)
    r = cli("run", "--model", "Org/Tiny", clip5, "--max-new-tokens", "6", "--format", "json", "--threads", "2", env=env)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    cache = tmp_path / "cache" / "Org--Tiny"
    assert d["model"]["decoder"] == str(cache / "Tiny-q8_0.gguf")
    assert d["model"]["mmproj"] == str(cache / "mmproj-Tiny-f16.gguf")
    # the same ids as the pair quantized from the directory itself
    dec, mm = gguf_pair(ck_gqa, "q8_0")
    r2 = cli("run", "--gguf", dec, "--mmproj", mm, clip5, "--max-new-tokens", "6", "--format", "json", "--threads", "2",
             env=env)
    assert r2.returncode == 0 and json.loads(r2.stdout)["token_ids"] == d["token_ids"]
    # from Python, by name: the cached pair again (not quantized a second time)
    mtime = (cache / "Tiny-q8_0.gguf").stat().st_mtime_ns
    code = ("from asrgguf import Transcriber\n"
            "tr = Transcriber.from_pretrained('Org/Tiny', threads=2)\n"
            "print(tr.model_info['decoder'])\n")
    r3 = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r3.returncode == 0 and r3.stdout == str(cache / "Tiny-q8_0.gguf") + "\n", r3.stderr
    assert (cache / "Tiny-q8_0.gguf").stat().st_mtime_ns == mtime


def test_unknown_name_offline_is_one_line(clip5, tmp_path):
    r = cli("run", "--model", "Org/Missing", clip5, env=_env(tmp_path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == (f"asrgguf: error: Org/Missing: not a checkpoint directory, and not in the Hugging Face "
                        f"cache ({tmp_path / 'hf' / 'hub'}) while offline (HF_HUB_OFFLINE=1)\n")
