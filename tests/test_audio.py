"""Audio files decode to the official samples (normalize_audio_input), at any rate and channel count."""
import subprocess

import numpy as np
import pytest
import soundfile as sf

from asrgguf import audio
from asrgguf.errors import AsrggufError
from support.reference import official_wav


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


def test_libsndfile_chatter_silenced_on_8_threads_and_stderr_kept(tmp_path):
    """libmpg123's notes about junk mp3 input never reach stderr, while 8 threads read at once; afterwards
    both Python's stderr (file descriptor 2: tracebacks, the server's log) and C's stderr still print."""
    import subprocess
    import sys

    good = tmp_path / "good.mp3"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "sine=f=440:d=3", "-ar", "16000",
                    str(good)], check=True)
    data = good.read_bytes()
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(data[:2000] + b"\x00garbage" * 200 + data[2000:])
    code = f"""
import ctypes, sys, threading
from asrgguf import audio
errors = []
def read(path):
    for _ in range(5):
        try:
            info = audio.probe(path)
            sum(b.size for b in audio.stream_16k(path, info))
        except audio.AsrggufError as e:
            errors.append(str(e))
ts = [threading.Thread(target=read, args=([{str(junk)!r}, {str(good)!r}][i % 2],)) for i in range(8)]
[t.start() for t in ts]
[t.join() for t in ts]
print("python stderr after", len(errors) > 0, file=sys.stderr, flush=True)
libc = ctypes.CDLL(None)
libc.fprintf(ctypes.c_void_p.in_dll(libc, "stderr"), b"c stderr after\\n")
libc.fflush(None)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stderr.splitlines() == ["python stderr after True", "c stderr after"]
