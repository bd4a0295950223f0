"""The audio loader under property-based fuzzing, run as its own process by tests/test_fuzz.py (libsndfile,
FFmpeg and soxr are C libraries: an abort there must fail the test, not end the test run).

Every input gives a result or an AsrggufError, and each is checked for what it must be:
- valid audio is transcribed with the built-in demo model (4 new tokens a piece): the result's duration is the
  number of 16 kHz samples the loader gives / 16000, its token ids lie inside the decoder's vocabulary, its
  segments are in order and inside the duration; the loader's samples are float32 in [-1, 1] and its block
  stream gives as many samples as a whole read;
- invalid input raises AsrggufError with a one-line message that begins with the input's name (the path,
  "<bytes>", "<file object>"; "audio array" / "audio sample rate" for arrays).
Before each example the input is written to FUZZ_DIR/last-input (+ .txt for arrays) so a crash leaves its
reproducer behind.
Usage: python tests/support/fuzz_audio.py FUZZ_DIR MAX_EXAMPLES
"""
from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from asrgguf import Transcriber, audio  # noqa: E402
from asrgguf.errors import AsrggufError  # noqa: E402
from asrgguf.results import Transcription  # noqa: E402

OUT = Path(sys.argv[1])
N = int(sys.argv[2])
SETTINGS = settings(max_examples=N, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def _seeds() -> dict[str, bytes]:
    """Small valid files of each format: 0.3 s of a chirp, stereo, 22.05 kHz."""
    sr = 22050
    t = np.arange(int(0.3 * sr)) / sr
    x = (0.5 * np.sin(2 * np.pi * (200 + 2000 * t) * t)).astype(np.float32)
    x = np.stack([x, -x], axis=1)
    out = {}
    for ext, kw in (("wav", {"subtype": "PCM_16"}), ("flac", {}), ("mp3", {"format": "MP3"}),
                    ("ogg", {"format": "OGG", "subtype": "VORBIS"}), ("u8.wav", {"subtype": "PCM_U8"}),
                    ("f.wav", {"subtype": "FLOAT"})):
        buf = io.BytesIO()
        sf.write(buf, x, sr, format=kw.pop("format", ext.rsplit(".", 1)[-1].upper()), **kw)
        out[ext] = buf.getvalue()
    return out


SEEDS = _seeds()
COUNT = {"ok": 0, "error": 0, "short": 0}


TR = Transcriber.from_pretrained("demo", threads=1)
N_VOCAB = TR.decoder.n_vocab


N_MIN = TR.encoder.params.n_fft // 2   # the log-mel's reflect padding needs more samples than this


def _check_result(source, name: str, n_samples: int) -> None:
    """What a transcription of valid audio must be (see the module's docstring); audio too short for the
    log-mel is refused in one line that names the input."""
    try:
        res = Transcription.collect(*TR.transcribe(source, max_new_tokens=4))
    except AsrggufError as e:
        assert n_samples <= N_MIN, (str(e), n_samples)
        assert str(e) == (f"{name}: audio is too short ({n_samples} samples at 16 kHz; at least {N_MIN + 1} "
                          f"are needed)"), str(e)
        COUNT["short"] += 1
        return
    assert n_samples > N_MIN, n_samples
    assert res.duration == n_samples / audio.SAMPLE_RATE, (res.duration, n_samples)
    assert res.segments, "valid audio gave no segment"
    prev = 0.0
    for seg in res.segments:
        assert all(0 <= t < N_VOCAB for t in seg.token_ids), (seg.token_ids, N_VOCAB)
        assert prev <= seg.start <= seg.end <= res.duration + 1e-6, (prev, seg.start, seg.end, res.duration)
        prev = seg.start
    assert res.segments[-1].end == res.duration, (res.segments[-1].end, res.duration)


def _check_error(e: AsrggufError, name: str | tuple[str, ...]) -> None:
    msg = str(e)
    assert msg and "\n" not in msg, msg
    assert msg.startswith(name), (msg, name)


def _consume(make, name: str) -> None:
    """probe, load, the block stream and a transcription of one source (`make()` gives it afresh): a
    checked result or an AsrggufError that names it."""
    try:
        info = audio.probe(make())
        wav = audio.load(make())
    except AsrggufError as e:
        _check_error(e, name)
        COUNT["error"] += 1
        return
    assert info.name == name, (info.name, name)
    assert wav.dtype == np.float32 and wav.ndim == 1 and wav.size > 0 and np.all(np.abs(wav) <= 1.0)
    n = sum(b.size for b in audio.stream_16k(make(), info, block_frames=4096))
    assert n == wav.size, (n, wav.size)
    _check_result(make(), name, wav.size)
    COUNT["ok"] += 1


@st.composite
def mutated(draw):
    ext = draw(st.sampled_from(sorted(SEEDS)))
    b = bytearray(SEEDS[ext])
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "u32", "cut", "insert"]))
        head = min(len(b), 256) if draw(st.booleans()) else len(b)   # headers are where parsers go wrong
        if not b:
            break
        i = draw(st.integers(0, max(0, head - 1)))
        if op == "flip":
            b[i] = draw(st.integers(0, 255))
        elif op == "u32":
            b[i:i + 4] = draw(st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0x80000000])).to_bytes(4, "little")
        elif op == "cut":
            del b[i:]
        else:
            b[i:i] = draw(st.binary(min_size=1, max_size=64))
    return ext, bytes(b)


@SETTINGS
@given(mutated(), st.booleans())
def fuzz_files(case, as_path):
    ext, data = case
    p = OUT / f"last-input.{ext}"
    p.write_bytes(data)
    if as_path:
        _consume(lambda: str(p), str(p))
    else:
        _consume(lambda: data, "<bytes>")


@SETTINGS
@given(st.binary(max_size=4096), st.sampled_from(["wav", "mp3", "flac", "ogg", "m4a", "mp4", "bin"]))
def fuzz_random_bytes(data, ext):
    p = OUT / f"last-input.{ext}"
    p.write_bytes(data)
    _consume(lambda: str(p), str(p))
    _consume(lambda: io.BytesIO(data), "<file object>")


DTYPES = st.sampled_from(["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "uint16",
                          "bool", "complex64"])


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(st.sampled_from([(draw(st.integers(0, 6000)),), (draw(st.integers(0, 9)), draw(st.integers(0, 3000))),
                                  (draw(st.integers(0, 3000)), draw(st.integers(0, 9))), (2, 2, 2), ()]))
    elements = None
    if dtype.kind == "f":
        elements = st.floats(allow_nan=True, allow_infinity=True, width=dtype.itemsize * 8)
    return draw(hnp.arrays(dtype, shape, elements=elements, fill=st.nothing() if elements is None else None))


@SETTINGS
@given(arrays(), st.one_of(st.sampled_from([16000, 8000, 44100, 192000, 1000, 1_000_000]), st.integers(-5, 2_000_000),
                           st.floats(allow_nan=True), st.none(), st.text(max_size=3)))
def fuzz_arrays(arr, sr):
    (OUT / "last-input.txt").write_text(f"dtype={arr.dtype} shape={arr.shape} sr={sr!r}\n")
    try:
        y = audio.prepare(arr, sr)
    except AsrggufError as e:
        _check_error(e, ("audio array", "audio sample rate"))
        COUNT["error"] += 1
        return
    assert y.dtype == np.float32 and y.ndim == 1 and y.size > 0 and np.all(np.abs(y) <= 1.0)
    _check_result((arr, sr), "<array>", y.size)
    COUNT["ok"] += 1


if __name__ == "__main__":
    fuzz_files()
    fuzz_random_bytes()
    fuzz_arrays()
    print(f"ok {COUNT['ok']} error {COUNT['error']} short {COUNT['short']}")
