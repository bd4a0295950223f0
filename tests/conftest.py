"""Shared fixtures: random tiny checkpoints (official classes), their GGUF pairs, espeak-ng speech."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import demo_speech as speech  # noqa: E402
from speech_text import SENTENCES  # noqa: E402


def espeak(path: Path, text: str, voice: str = "en", speed: int = 160) -> Path:
    if not shutil.which("espeak-ng"):
        pytest.fail("espeak-ng is not installed (.ci/run installs it)")
    speech.write_wav(path, text, voice, speed)
    return path


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def clip5(data_dir) -> Path:
    """About 5 s of speech at 22.05 kHz (resampled to 16 kHz on the way in)."""
    return espeak(data_dir / "clip5.wav", SENTENCES[0] + " " + SENTENCES[1][:30], speed=170)


@pytest.fixture(scope="session")
def clip20(data_dir) -> Path:
    """About 20 s of speech: several encoder windows (104 frames = 8 s each)."""
    return espeak(data_dir / "clip20.wav", " ".join(SENTENCES), speed=165)


def _make_ck(data_dir: Path, name: str, size: str = "tiny", **kw) -> Path:
    from random_checkpoint import write_checkpoint

    out = data_dir / name
    if not (out / "config.json").exists():
        write_checkpoint(out, size=size, **kw)
    return out


@pytest.fixture(scope="session")
def ck_gqa(data_dir) -> Path:
    """Tiny checkpoint: GQA (4 query / 2 kv heads), untied output head, original layout."""
    return _make_ck(data_dir, "tiny-gqa", seed=0, mha=False, tied=False)


@pytest.fixture(scope="session")
def ck_mha(data_dir) -> Path:
    """Tiny checkpoint: MHA (4 / 4 heads), tied output head."""
    return _make_ck(data_dir, "tiny-mha", seed=1, mha=True, tied=True)


@pytest.fixture(scope="session")
def ck_gqa_hf(data_dir) -> Path:
    """The ck_gqa weights in the transformers-native (*-hf) layout, sharded."""
    return _make_ck(data_dir, "tiny-gqa-hf", seed=0, mha=False, tied=False, layout="hf", shard_size="20MB")


_PAIRS: dict = {}


@pytest.fixture(scope="session")
def gguf_pair(data_dir):
    """gguf_pair(checkpoint, outtype) -> (decoder, mmproj), converted once per session."""
    from asrgguf.convert import quantize_checkpoint

    def make(ck: Path, outtype: str, mmproj_type: str | None = None):
        mm = mmproj_type or ("f32" if outtype == "f32" else "f16")
        key = (str(ck), outtype, mm)
        if key not in _PAIRS:
            _PAIRS[key] = quantize_checkpoint(ck, outtype, data_dir / "gguf" / ck.name, mm, progress=False)
        return _PAIRS[key]
    return make
