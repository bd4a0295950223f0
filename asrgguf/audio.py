"""Any audio source -> 16 kHz mono float32, block by block, as the official `normalize_audio_input`.

The official function reads with `librosa.load(path, sr=None, mono=False)` (soundfile), averages the
channels, resamples with `librosa.resample` (soxr HQ) and applies `float_range_normalize` (divide by
the peak when it is above 1.0, then clip). asrgguf does the same steps on a stream, so memory holds
one block whatever the length of the recording:

* decoding: soundfile (what librosa uses: the same samples) where it can, PyAV (FFmpeg) otherwise
  (mp3 through FFmpeg when libsndfile cannot, m4a/aac, opus, the audio of video files), a block at a
  time, channels averaged per block;
* resampling: `soxr.ResampleStream` (HQ), whose output equals the one-shot `soxr.resample` that
  librosa calls bit for bit, then librosa's `fix_length` to ceil(n * 16000 / sr) samples;
* normalisation: when the source can exceed 1.0 (float samples, or anything resampled, since the
  sinc filter can overshoot) a first pass finds the global peak, so the second pass scales exactly;
  integer PCM already at 16 kHz needs no first pass.

Sources: a path, bytes, a binary file object (read twice when it can seek, else buffered), a
16 kHz mono array, or `(array, sample_rate)` with channels on either axis. libsndfile's mp3 reader
returns slightly different samples (a few float32 ulp) when a file is read in blocks, so `load`
(whole files) reads in one call and gives the official samples bit for bit.
"""
from __future__ import annotations

import io
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from .errors import AsrggufError
from .quiet_stderr import quiet_c_stderr as _quiet_stderr

SAMPLE_RATE = 16000
BLOCK_FRAMES = 1152 * 56             # source frames per decoded block (a whole number of MPEG frames)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else "unknown error"


def _av_error(name: str, e: Exception) -> AsrggufError:
    """FFmpeg's reason without its errno and the repeated file name ("Invalid data found when processing
    input"); other exceptions with their type."""
    why = getattr(e, "strerror", None)
    if not (isinstance(why, str) and why):
        why = f"{type(e).__name__}: {_first_line(e)}"
    return AsrggufError(f"{name}: cannot decode audio ({why})")


def check_path(path: str) -> None:
    """One-line errors for a missing, unreadable, directory, special or empty input file."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AsrggufError(f"{path}: no such file") from None
    except OSError as e:
        raise AsrggufError(f"{path}: cannot read ({e.strerror})") from None
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise AsrggufError(f"{path}: is a directory, not an audio file")
    if not stat.S_ISREG(st.st_mode):
        raise AsrggufError(f"{path}: not a regular file (a pipe or device cannot be read twice; save it to a file)")
    if st.st_size == 0:
        raise AsrggufError(f"{path}: file is empty")
    if not os.access(path, os.R_OK):
        raise AsrggufError(f"{path}: cannot read (permission denied)")


# --------------------------------------------------------------------------- sources
@dataclass
class SourceInfo:
    """An opened-far-enough audio source: what the decoders need to read it again, block by block."""
    name: str                   # for messages and results: the path, or "<bytes>" / the file object's name
    sample_rate: int
    channels: int
    integer_pcm: bool           # samples cannot exceed [-1, 1]
    duration: float | None      # seconds, from the header (None when unknown)
    backend: str                # "soundfile" or "av"
    data: bytes | None = None   # in-memory sources (bytes, file objects)

    @property
    def path(self) -> str:      # the name under which the source was given
        return self.name

    def _open(self):
        """A fresh handle for the decoders: the path, or a new reader over the bytes."""
        return io.BytesIO(self.data) if self.data is not None else self.name


def _probe_soundfile(name: str, handle, data) -> SourceInfo | None:
    import soundfile as sf

    try:
        with _quiet_stderr(), sf.SoundFile(handle) as f:
            frames = f.frames
            dur = frames / f.samplerate if frames and frames > 0 else None
            return SourceInfo(name, int(f.samplerate), int(f.channels), str(f.subtype).startswith("PCM_"),
                              dur, "soundfile", data)
    except Exception:
        return None


def _first_audio_stream(container, name: str):
    streams = [s for s in container.streams if s.type == "audio"]
    if not streams:
        raise AsrggufError(f"{name}: no audio stream in file")
    return streams[0]


def _probe_av(name: str, handle, data) -> SourceInfo:
    import av

    try:
        with av.open(handle) as c:
            s = _first_audio_stream(c, name)
            sr = int(s.codec_context.sample_rate or s.rate or 0)
            if sr <= 0:
                raise AsrggufError(f"{name}: audio stream has no sample rate")
            dur = None
            if s.duration is not None and s.time_base is not None:
                dur = float(s.duration * s.time_base)
            elif c.duration is not None:
                dur = c.duration / 1_000_000
            fmt = s.codec_context.format.name if s.codec_context.format is not None else ""
            return SourceInfo(name, sr, int(s.codec_context.channels or 1),
                              fmt.rstrip("p") in ("u8", "s16", "s32"), dur, "av", data)
    except AsrggufError:
        raise
    except Exception as e:
        raise _av_error(name, e) from None


def probe(source) -> SourceInfo:
    """Open a path, bytes or binary file object far enough to know its rate, channels and duration."""
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        check_path(name)
        return _probe_soundfile(name, name, None) or _probe_av(name, name, None)
    if isinstance(source, (bytes, bytearray, memoryview)):
        name, data = "<bytes>", bytes(source)
    elif hasattr(source, "read"):
        name = str(getattr(source, "name", None) or "<file object>")
        try:
            data = source.read()
        except Exception as e:
            raise AsrggufError(f"{name}: cannot read ({_first_line(e)})") from None
        if isinstance(data, str):
            raise AsrggufError(f"{name}: opened in text mode; open audio files in binary mode ('rb')")
        data = bytes(data)
    else:
        raise AsrggufError(f"cannot read audio from a {type(source).__name__} (give a path, bytes, a binary "
                           f"file object, a 16 kHz array or (array, sample_rate))")
    if not data:
        raise AsrggufError(f"{name}: file is empty")
    return _probe_soundfile(name, io.BytesIO(data), data) or _probe_av(name, io.BytesIO(data), data)


def _mono(block: np.ndarray) -> np.ndarray:
    """(samples, channels) -> (samples,), the channel mean as the official to_mono."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    return np.mean(block, axis=-1).astype(np.float32)


def _pcm_to_float(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.kind == "u":  # u8 and friends: offset binary
        half = float(np.iinfo(arr.dtype).max + 1) / 2
        return ((arr.astype(np.float32) - half) / half).astype(np.float32)
    if arr.dtype.kind == "i":
        return arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
    return arr.astype(np.float32, copy=False)


def iter_source_blocks(info: SourceInfo, block_frames: int | None = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Mono float32 blocks at the source rate (block_frames None: the whole file in one read)."""
    if info.backend == "soundfile":
        import soundfile as sf

        try:
            with _quiet_stderr():
                f = sf.SoundFile(info._open())
        except Exception as e:
            raise AsrggufError(f"{info.name}: cannot decode audio ({type(e).__name__}: {_first_line(e)})") from None
        try:
            while True:
                try:
                    with _quiet_stderr():
                        block = f.read(frames=block_frames or -1, dtype="float32", always_2d=True)
                except Exception as e:
                    raise AsrggufError(f"{info.name}: cannot decode audio ({type(e).__name__}: "
                                       f"{_first_line(e)})") from None
                if block.shape[0] == 0:
                    return
                yield _mono(block)
                if not block_frames:
                    return
        finally:
            f.close()
        return
    import av

    try:
        c = av.open(info._open())
    except Exception as e:
        raise _av_error(info.name, e) from None
    try:
        stream = _first_audio_stream(c, info.name)
        pending: list[np.ndarray] = []
        n = 0
        frames = c.decode(stream)
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except Exception as e:
                raise _av_error(info.name, e) from None
            arr = _pcm_to_float(frame.to_ndarray())
            if frame.format.is_packed:
                arr = arr.reshape(-1, len(frame.layout.channels))  # interleaved -> (samples, channels)
            else:
                arr = arr.T
            pending.append(_mono(arr))
            n += pending[-1].shape[0]
            if block_frames and n >= block_frames:
                yield np.concatenate(pending)
                pending, n = [], 0
        if pending:
            yield np.concatenate(pending)
    finally:
        c.close()


def iter_resampled(blocks: Iterable[np.ndarray], sr: int, target_sr: int = SAMPLE_RATE,
                   hold: int = 4096) -> Iterator[np.ndarray]:
    """Stream-resample with soxr HQ; the concatenation equals librosa.resample(whole, sr, target_sr)."""
    if sr == target_sr:
        yield from blocks
        return
    import soxr

    rs = soxr.ResampleStream(sr, target_sr, 1, dtype="float32", quality="HQ")
    n_in = n_out = 0
    tail = np.zeros(0, np.float32)  # held back: librosa's fix_length may trim the end
    for b in blocks:
        n_in += b.shape[0]
        y = rs.resample_chunk(np.ascontiguousarray(b, dtype=np.float32), last=False)
        if y.size:
            tail = np.concatenate([tail, y]) if tail.size else y
            if tail.size > hold:
                n_out += tail.size - hold
                yield tail[:-hold]
                tail = tail[-hold:].copy()
    tail = np.concatenate([tail, rs.resample_chunk(np.zeros(0, np.float32), last=True)])
    # librosa.resample(fix=True) returns exactly ceil(n * ratio) samples (zero padded or trimmed)
    want = int(np.ceil(n_in * (float(target_sr) / sr))) - n_out
    if want < 0:
        raise AsrggufError("resampler produced more output than expected (internal error)")
    if tail.size > want:
        tail = tail[:want]
    elif tail.size < want:
        tail = np.concatenate([tail, np.zeros(want - tail.size, np.float32)])
    if tail.size:
        yield tail


def _nonfinite(name: str) -> AsrggufError:
    return AsrggufError(f"{name}: audio contains NaN or infinite samples")


def stream_16k(source, info: SourceInfo | None = None, exact_peak: bool = True,
               block_frames: int | None = BLOCK_FRAMES, on_read: Callable[[float], None] | None = None
               ) -> Iterator[np.ndarray]:
    """The official normalize_audio_input(source) as a stream of 16 kHz mono float32 blocks.

    on_read(seconds) is told how long each block took to decode and resample."""
    info = info or probe(source)

    def one_pass() -> Iterator[np.ndarray]:
        return iter_resampled(iter_source_blocks(info, block_frames), info.sample_rate)

    peak = 1.0
    if exact_peak and not (info.integer_pcm and info.sample_rate == SAMPLE_RATE):
        t0 = time.perf_counter()
        peak = 0.0
        for b in one_pass():
            if b.size:
                m = float(np.max(np.abs(b)))
                if not math.isfinite(m):
                    raise _nonfinite(info.name)
                peak = max(peak, m)
        if on_read:
            on_read(time.perf_counter() - t0)
    scale = peak if peak > 1.0 else None
    n = 0
    it = one_pass()
    while True:
        t0 = time.perf_counter()
        try:
            b = next(it)
        except StopIteration:
            break
        if not np.all(np.isfinite(b)):
            raise _nonfinite(info.name)
        if scale is not None:
            b = b / scale  # float32 / python float stays float32, as the official audio / peak
        b = np.clip(b, -1.0, 1.0)
        n += b.size
        if on_read:
            on_read(time.perf_counter() - t0)
        yield b
    if n == 0:
        raise AsrggufError(f"{info.name}: audio stream is empty")


# --------------------------------------------------------------------------- arrays
def to_mono(audio: np.ndarray) -> np.ndarray:
    """(samples,), (channels, samples) or (samples, channels) -> (samples,), the channel mean.

    The shorter axis is taken as the channels (soundfile.read gives (frames, channels); librosa and
    the official package (channels, samples))."""
    if audio.ndim == 1:
        return audio
    if audio.ndim != 2 or 0 in audio.shape:
        raise AsrggufError(f"audio array has shape {list(audio.shape)}; expected (samples,), (channels, samples) "
                           f"or (samples, channels)")
    if audio.shape[0] > audio.shape[1]:
        audio = audio.T
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


def prepare(audio, sr: int = SAMPLE_RATE) -> np.ndarray:
    """An array at any rate (mono or channels on either axis) -> 16 kHz mono float32 in [-1, 1]."""
    try:
        arr = np.asarray(audio)
    except Exception as e:
        raise AsrggufError(f"audio array: cannot convert ({_first_line(e)})") from None
    if arr.dtype.kind in "iu":
        arr = _pcm_to_float(arr)
    elif arr.dtype.kind not in "f":
        raise AsrggufError(f"audio array has dtype {arr.dtype}; expected float or integer PCM samples")
    if not (isinstance(sr, (int, np.integer)) and 1000 <= int(sr) <= 1_000_000):
        raise AsrggufError(f"audio sample rate {sr!r} is not a rate in Hz (1000 to 1000000)")
    arr = to_mono(arr.astype(np.float32, copy=False))
    if arr.size == 0:
        raise AsrggufError("audio array is empty")
    if not np.all(np.isfinite(arr)):
        raise _nonfinite("audio array")
    if int(sr) != SAMPLE_RATE:
        arr = np.concatenate(list(iter_resampled([arr], int(sr))) or [np.zeros(0, np.float32)])
    return float_range_normalize(arr)


def load(source) -> np.ndarray:
    """A whole source (path, bytes, file object) as 16 kHz mono float32, read in one call.

    For files, bit for bit the official `normalize_audio_input(path)`."""
    info = probe(source)
    return np.concatenate(list(stream_16k(source, info, block_frames=None)))


def raw_pcm_blocks(fileobj, rate: int, block_samples: int = 1600) -> Iterator[np.ndarray]:
    """Raw signed 16-bit little-endian mono PCM at `rate` (a pipe: `arecord`, `ffmpeg -f s16le -`) as 16 kHz
    float32 blocks, as they arrive (an odd trailing byte is dropped)."""
    if not 1000 <= rate <= 384000:
        raise AsrggufError(f"raw rate must be between 1000 and 384000 Hz (got {rate})")

    def blocks() -> Iterator[np.ndarray]:
        step = max(2, block_samples * rate // SAMPLE_RATE * 2)
        rest = b""
        while True:
            data = fileobj.read1(step) if hasattr(fileobj, "read1") else fileobj.read(step)
            if not data:
                return
            data, rest = rest + data, b""
            if len(data) % 2:
                data, rest = data[:-1], data[-1:]
            if data:
                yield np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
    return iter_resampled(blocks(), rate)
