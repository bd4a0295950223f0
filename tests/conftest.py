"""Shared fixtures: random tiny checkpoints (official classes), their GGUF pairs, espeak-ng speech."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))   # tests/support, a package of test helpers

import support.demo_speech as speech  # noqa: E402
from support.speech_text import SENTENCES  # noqa: E402


LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")   # Debian's pocketsphinx-testdata (.ci/run)


def official_utils():
    """The official package's audio and text helpers (qwen_asr.inference.utils)."""
    from qwen_asr.inference import utils

    return utils


def write_wav(path: Path, wav: np.ndarray, sr: int, **kw) -> Path:
    sf.write(path, wav, sr, **kw)
    return path


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
    from support.random_checkpoint import write_checkpoint

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


@pytest.fixture(scope="session")
def clips(data_dir):
    """The five test sentences as 22.05 kHz espeak clips, read as float32."""
    out = []
    for i, s in enumerate(SENTENCES):
        p = espeak(data_dir / f"sent{i}.wav", s)
        out.append(sf.read(p, dtype="float32")[0])
    return out


def speech_with_silences(clips, seconds: float, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """Speech clips separated by 0.2-2.5 s of faint noise, up to `seconds` long."""
    rng = np.random.default_rng(seed)
    parts, n, want = [], 0, int(seconds * sr)
    while n < want:
        c = clips[int(rng.integers(len(clips)))] * float(rng.uniform(0.3, 1.0))
        gap = (rng.standard_normal(int(rng.uniform(0.2, 2.5) * sr)) * 1e-3).astype(np.float32)
        parts += [c.astype(np.float32), gap]
        n += len(c) + len(gap)
    return np.concatenate(parts)[:want]


@pytest.fixture(scope="session")
def real_files(data_dir):
    """Real read speech (LibriVox clips) with silences, stored as 16 kHz wav, 44.1 kHz stereo flac, mp3,
    and float wav whose peak is above 1.0."""
    import librosa

    if not LIBRIVOX.is_dir():
        pytest.fail(f"{LIBRIVOX} is missing: .ci/run installs Debian's pocketsphinx-testdata")
    parts = []
    for p in sorted(LIBRIVOX.glob("*.wav")):
        w, sr = sf.read(p, dtype="float32")
        assert sr == 16000
        parts += [w, np.zeros(int(0.7 * sr), np.float32)]
    wav16 = np.concatenate(parts)
    st = librosa.resample(wav16, orig_sr=16000, target_sr=44100)
    stereo = np.stack([st, st * 0.5], axis=1)
    return {
        "wav16": write_wav(data_dir / "real16.wav", wav16, 16000, subtype="PCM_16"),
        "flac44": write_wav(data_dir / "real44.flac", stereo, 44100, subtype="PCM_24"),
        "mp3": write_wav(data_dir / "real.mp3", st * 0.8, 44100, format="MP3"),
        "float_hot": write_wav(data_dir / "hot.wav", stereo * 1.7, 44100, subtype="FLOAT"),
    }


def _make_aligner(data_dir, name, **kw):
    from support.random_checkpoint import write_checkpoint

    out = data_dir / name
    if not (out / "config.json").exists():
        write_checkpoint(out, size="tiny", aligner=True, **kw)
    return out


@pytest.fixture(scope="session")
def ck_al_gqa(data_dir):
    """Tiny aligner: GQA (4 / 2 heads), the published 5000 classes."""
    return _make_aligner(data_dir, "tiny-aligner-gqa", seed=3)


@pytest.fixture(scope="session")
def ck_al_mha(data_dir):
    """Tiny aligner: MHA (4 / 4 heads), 400 classes (32 s: random times stay inside a 30 s piece)."""
    return _make_aligner(data_dir, "tiny-aligner-mha", seed=4, mha=True, classify_num=400)
