"""Audio files -> 16 kHz mono float32, downmixed, resampled and normalised as the official package.

The official `normalize_audio_input` reads with `librosa.load(path, sr=None, mono=False)` (soundfile),
averages channels, resamples with `librosa.resample` (soxr_hq) and applies `float_range_normalize`.
asrgguf reads with soundfile where it can (the same samples) and with PyAV (FFmpeg) otherwise
(mp3, m4a/aac, opus and the audio of video files), then does the same three steps.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from .errors import AsrggufError

SAMPLE_RATE = 16000


@contextlib.contextmanager
def _quiet_stderr():
    """libsndfile's mp3 decoder prints notes about junk input straight to fd 2."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _read_soundfile(path: str) -> tuple[np.ndarray, int] | None:
    import soundfile as sf

    try:  # exactly as librosa.load(path, sr=None, mono=False) reads (its soundfile path)
        with _quiet_stderr(), sf.SoundFile(path) as f:
            sr = f.samplerate
            data = f.read(frames=-1, dtype="float32", always_2d=False).T
    except Exception:
        return None
    return data, int(sr)  # (samples,) or (channels, samples)


def first_audio_stream(container, path: str):
    """(stream, sample rate) of a PyAV container's first audio stream; AsrggufError if none."""
    streams = [s for s in container.streams if s.type == "audio"]
    if not streams:
        raise AsrggufError(f"{path}: no audio stream in file")
    stream = streams[0]
    return stream, int(stream.codec_context.sample_rate or stream.rate)


def _read_av(path: str) -> tuple[np.ndarray, int]:
    import av

    try:
        with av.open(path) as container:
            stream, sr = first_audio_stream(container, path)
            chunks = []
            for frame in container.decode(stream):
                arr = frame.to_ndarray()
                if arr.dtype.kind == "i":
                    arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
                arr = arr.astype(np.float32, copy=False)
                if frame.format.is_packed:  # interleaved: (1, samples*channels)
                    arr = arr.reshape(-1, len(frame.layout.channels)).T
                chunks.append(arr)
    except AsrggufError:
        raise
    except Exception as e:
        raise AsrggufError(f"{path}: cannot decode audio ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'unknown error'})") from None
    if not chunks:
        raise AsrggufError(f"{path}: audio stream is empty")
    return np.concatenate(chunks, axis=1), int(sr)


def to_mono(audio: np.ndarray) -> np.ndarray:
    """(channels, samples) or (samples,) -> (samples,), channel mean as the official to_mono."""
    if audio.ndim == 1:
        return audio
    return np.mean(audio.T, axis=-1).astype(np.float32)


def float_range_normalize(audio: np.ndarray) -> np.ndarray:
    audio = audio.astype(np.float32)
    if audio.size == 0:
        return audio
    peak = float(np.max(np.abs(audio)))
    if peak == 0.0:
        return audio
    if peak > 1.0:
        audio = audio / peak
    return np.clip(audio, -1.0, 1.0)


def resample(audio: np.ndarray, sr: int) -> np.ndarray:
    """librosa.resample(audio, orig_sr=sr, target_sr=16000) with its default soxr_hq, without
    importing librosa (about 1.5 s): soxr's HQ one-shot resampler, then librosa's fix_length to
    ceil(n * 16000 / sr) samples."""
    import soxr

    n_out = int(np.ceil(audio.shape[-1] * float(SAMPLE_RATE) / sr))
    y = soxr.resample(audio, sr, SAMPLE_RATE, quality="HQ").astype(np.float32)
    if y.shape[-1] > n_out:
        y = y[:n_out]
    elif y.shape[-1] < n_out:
        y = np.pad(y, (0, n_out - y.shape[-1]))
    return y


def prepare(audio: np.ndarray, sr: int) -> np.ndarray:
    """Any-rate waveform ((channels, samples) or (samples,)) -> 16 kHz mono float32 in [-1, 1]."""
    audio = to_mono(np.asarray(audio, dtype=np.float32))
    if sr != SAMPLE_RATE:
        audio = resample(audio, sr)
    return float_range_normalize(audio)


def check_path(path: str) -> None:
    """One-line errors for a missing, directory or empty input file."""
    p = Path(path)
    if not p.exists():
        raise AsrggufError(f"{path}: no such file")
    if p.is_dir():
        raise AsrggufError(f"{path}: is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AsrggufError(f"{path}: file is empty")


def load(path: str | Path) -> np.ndarray:
    """Decode an audio (or video) file to 16 kHz mono float32; AsrggufError with one line on failure."""
    path = str(path)
    check_path(path)
    got = _read_soundfile(path)
    audio, sr = got if got is not None else _read_av(path)
    if audio.size == 0:
        raise AsrggufError(f"{path}: audio stream is empty")
    wav = prepare(audio, sr)
    if not np.all(np.isfinite(wav)):
        raise AsrggufError(f"{path}: audio contains NaN or infinite samples")
    return wav
