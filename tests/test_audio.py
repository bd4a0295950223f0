"""Audio files decode to the official samples (normalize_audio_input), at any rate and channel count."""
import subprocess

import numpy as np
import pytest
import soundfile as sf

from asrgguf import audio
from asrgguf.errors import AsrggufError
from reference import official_wav


def sox(src, dst, *args):
    subprocess.run(["sox", str(src), *map(str, args[:0]), str(dst), *map(str, args)], check=True)
    return dst


@pytest.mark.parametrize("rate,channels,ext", [(16000, 1, "wav"), (22050, 1, "wav"), (44100, 2, "flac"),
                                               (48000, 2, "wav"), (8000, 1, "flac"), (44100, 1, "ogg")])
def test_bit_identical_to_official(clip5, tmp_path, rate, channels, ext):
    path = tmp_path / f"x.{ext}"
    subprocess.run(["sox", str(clip5), "-r", str(rate), "-c", str(channels), str(path)], check=True)
    ours, ref = audio.load(path), official_wav(str(path))
    assert ours.dtype == np.float32 and np.array_equal(ours, ref)


def test_loud_file_is_normalised_as_official(tmp_path):
    path = tmp_path / "loud.wav"
    sf.write(path, (np.sin(np.arange(32000) / 7) * 3).astype(np.float32), 16000, subtype="FLOAT")
    assert np.array_equal(audio.load(path), official_wav(str(path)))


@pytest.mark.parametrize("fmt,args", [("mp3", []), ("m4a", ["-c:a", "aac"]), ("opus", ["-c:a", "libopus"]),
                                      ("mkv", ["-f", "lavfi", "-i", "color=c=black:s=32x32:d=10", "-map", "0:a", "-map", "1:v"])])
def test_compressed_and_video(clip5, tmp_path, fmt, args):
    """mp3, AAC, Opus and a video's audio track: same length and close to the official samples."""
    path = tmp_path / f"x.{fmt}"
    pre = args if fmt == "mkv" else []
    post = [] if fmt == "mkv" else args
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip5), *pre, *post, str(path)], check=True)
    ours = audio.load(path)
    ref = official_wav(str(clip5))
    assert abs(len(ours) - len(ref)) < 0.05 * 16000
    n = min(len(ours), len(ref))
    assert ours.dtype == np.float32 and np.abs(ours).max() <= 1.0 and np.abs(ours[:n]).mean() > 0.01


def test_mp3_identical_to_official(clip5, tmp_path):
    path = tmp_path / "x.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip5), str(path)], check=True)
    assert np.array_equal(audio.load(path), official_wav(str(path)))


@pytest.mark.parametrize("content,msg", [(None, "no such file"), (b"", "file is empty"),
                                         (b"this is not audio at all" * 10, "cannot decode audio")])
def test_bad_files(tmp_path, content, msg):
    path = tmp_path / "bad.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AsrggufError, match=f"^{path}: {msg}"):
        audio.load(path)


def test_directory(tmp_path):
    with pytest.raises(AsrggufError, match=f"^{tmp_path}: is a directory, not an audio file$"):
        audio.load(tmp_path)
