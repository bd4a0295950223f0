"""Long recordings at bounded memory: block-wise decoding, streaming resampling, pieces cut at quiet points.

The official package loads the whole file, resamples it (`librosa.resample`, soxr HQ), normalises
it (`float_range_normalize`) and cuts it with `split_audio_into_chunks` into pieces of about
`max_chunk_sec` (1200 s) at the quietest 100 ms within +-5 s of each nominal cut; every piece is
transcribed on its own and the texts are joined. asrgguf does the same steps on a stream:

* decoding: soundfile (as `librosa.load`) or PyAV, a block at a time, channels averaged per block;
* resampling: `soxr.ResampleStream` (HQ), whose output equals the one-shot `soxr.resample` that
  librosa calls bit for bit, followed by librosa's `fix_length` to ceil(n * 16000 / sr) samples;
* normalisation: `float_range_normalize` divides by the global peak when it is above 1.0. When
  the source can exceed 1.0 (float samples, or any resampled input, since the sinc filter can
  overshoot) a first pass over the file finds that peak, so the second pass can scale exactly;
  integer PCM already at 16 kHz needs no first pass;
* cutting: the loop of `split_audio_into_chunks` only ever looks at the samples from the current
  piece start to start + max_len + expand, so it runs over a buffer of that size, with the same
  numpy operations (same sums, same argmin ties) and the same zero padding of pieces shorter
  than 0.5 s (only when the audio is split, as in the official function).

So the pieces (samples and boundaries) are the official ones for the same maximum length, while
memory holds one piece plus the search margin, whatever the length of the recording.
Where results can still differ from whole-file official processing: libsndfile's mp3 reader returns
slightly different samples when a file is read in blocks instead of in one call (a few float32 ulp,
about 5e-8, with 64512-frame blocks; larger with small blocks), so for mp3 the samples are close but
not bit-identical and a cut could in principle move on a near-tie; files that soundfile cannot
read are decoded with PyAV (FFmpeg), which the official package cannot read at all; and the
pieces' texts are joined with a space between two pieces of space-delimited script (the official
package joins with "" everywhere, which glues English words together); for CJK text the join is
the official one.
"""
from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np

from .audio import _quiet_stderr, check_path, first_audio_stream
from .errors import AsrggufError

SAMPLE_RATE = 16000
OFFICIAL_MAX_PIECE_SECONDS = 1200.0   # the official MAX_ASR_INPUT_SECONDS
DEFAULT_PIECE_SECONDS = 30.0          # see docs/longform.md for the reasoning
SEARCH_EXPAND_SECONDS = 5.0
MIN_WINDOW_MS = 100.0
MIN_PIECE_SECONDS = 0.5               # the official MIN_ASR_INPUT_SECONDS
BLOCK_FRAMES = 1152 * 56             # source frames per decoded block (a whole number of MPEG frames)


# --------------------------------------------------------------------------- decoding
@dataclass
class SourceInfo:
    path: str
    sample_rate: int
    channels: int
    integer_pcm: bool           # samples cannot exceed [-1, 1]
    duration: float | None      # seconds, from the header (None when unknown)
    backend: str                # "soundfile" or "av"


def _mono(block: np.ndarray) -> np.ndarray:
    """(samples, channels) -> (samples,), the channel mean as the official to_mono."""
    if block.ndim == 1:
        return block.astype(np.float32, copy=False)
    if block.shape[1] == 1:
        return np.ascontiguousarray(block[:, 0], dtype=np.float32)
    return np.mean(block, axis=-1).astype(np.float32)


def _av_error(path: str, e: Exception) -> AsrggufError:
    msg = str(e).splitlines()[0] if str(e) else "unknown error"
    return AsrggufError(f"{path}: cannot decode audio ({type(e).__name__}: {msg})")


def probe(path: str | os.PathLike) -> SourceInfo:
    """Open the file far enough to know its rate, channels and (when the header says) duration."""
    path = str(path)
    check_path(path)
    import soundfile as sf

    try:
        with _quiet_stderr(), sf.SoundFile(path) as f:
            frames = f.frames
            dur = frames / f.samplerate if frames and frames > 0 else None
            return SourceInfo(path, int(f.samplerate), int(f.channels), str(f.subtype).startswith("PCM_"),
                              dur, "soundfile")
    except Exception:
        pass
    import av

    try:
        with av.open(path) as c:
            s, sr = first_audio_stream(c, path)
            dur = None
            if s.duration is not None and s.time_base is not None:
                dur = float(s.duration * s.time_base)
            elif c.duration is not None:
                dur = c.duration / 1_000_000
            fmt = s.codec_context.format.name if s.codec_context.format is not None else ""
            return SourceInfo(path, int(sr), int(s.codec_context.channels or 1),
                              fmt.rstrip("p") in ("u8", "s16", "s32"), dur, "av")
    except AsrggufError:
        raise
    except Exception as e:
        raise _av_error(path, e) from None


def iter_source_blocks(info: SourceInfo, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
    """Mono float32 blocks at the source rate, exactly the samples the whole-file read gives."""
    if info.backend == "soundfile":
        import soundfile as sf

        with _quiet_stderr():
            f = sf.SoundFile(info.path)
        try:
            while True:
                with _quiet_stderr():
                    block = f.read(frames=block_frames, dtype="float32", always_2d=True)
                if block.shape[0] == 0:
                    return
                yield _mono(block)
        finally:
            f.close()
    else:
        import av

        try:
            c = av.open(info.path)
        except Exception as e:
            raise _av_error(info.path, e) from None
        try:
            stream = [s for s in c.streams if s.type == "audio"][0]
            pending: list[np.ndarray] = []
            n = 0
            frames = c.decode(stream)
            while True:
                try:
                    frame = next(frames)
                except StopIteration:
                    break
                except Exception as e:
                    raise _av_error(info.path, e) from None
                arr = frame.to_ndarray()
                if arr.dtype.kind in "iu":
                    if arr.dtype.kind == "u":  # u8: offset binary
                        arr = (arr.astype(np.float32) - 128.0) / 128.0
                    else:
                        arr = arr.astype(np.float32) / float(np.iinfo(arr.dtype).max + 1)
                arr = arr.astype(np.float32, copy=False)
                if frame.format.is_packed:
                    arr = arr.reshape(-1, len(frame.layout.channels))  # (samples, channels)
                else:
                    arr = arr.T
                pending.append(_mono(arr))
                n += pending[-1].shape[0]
                if n >= block_frames:
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


def stream_16k(path: str | os.PathLike, info: SourceInfo | None = None, exact_peak: bool = True,
               block_frames: int = BLOCK_FRAMES, on_read: Callable[[float], None] | None = None
               ) -> Iterator[np.ndarray]:
    """The official normalize_audio_input(path) as a stream of 16 kHz mono float32 blocks.

    on_read(seconds) is told how long each block took to decode and resample.
    """
    info = info or probe(path)

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
                    raise AsrggufError(f"{info.path}: audio contains NaN or infinite samples")
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
        if scale is not None:
            b = b / scale  # float32 / python float stays float32, as the official audio / peak
        b = np.clip(b, -1.0, 1.0)
        if not np.all(np.isfinite(b)):
            raise AsrggufError(f"{info.path}: audio contains NaN or infinite samples")
        n += b.size
        if on_read:
            on_read(time.perf_counter() - t0)
        yield b
    if n == 0:
        raise AsrggufError(f"{info.path}: audio stream is empty")


# --------------------------------------------------------------------------- cutting
@dataclass
class Piece:
    index: int
    wav: np.ndarray          # what the model gets (zero-padded to 0.5 s when split, as officially)
    start: int               # first sample in the recording (16 kHz)
    length: int              # samples of the recording it covers (before padding)

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return (self.start + self.length) / SAMPLE_RATE


def iter_pieces(blocks: Iterable[np.ndarray], max_chunk_sec: float = DEFAULT_PIECE_SECONDS,
                sr: int = SAMPLE_RATE, search_expand_sec: float = SEARCH_EXPAND_SECONDS,
                min_window_ms: float = MIN_WINDOW_MS) -> Iterator[Piece]:
    """The official split_audio_into_chunks over a stream: same pieces, one piece + margin in memory."""
    max_len = int(max_chunk_sec * sr)
    expand = int(search_expand_sec * sr)
    win = max(4, int((min_window_ms / 1000.0) * sr))
    min_len = int(MIN_PIECE_SECONDS * sr)
    need = max_len + expand + 2  # enough to decide both of the official loop's tests
    it = iter(blocks)
    parts: list[np.ndarray] = []
    have = 0
    eof = False
    start = 0
    index = 0
    split = False

    def pad(c: np.ndarray) -> np.ndarray:
        if c.shape[0] < min_len:
            return np.pad(c, (0, min_len - int(c.shape[0])), mode="constant",
                          constant_values=0.0).astype(np.float32)
        return c

    while True:
        while not eof and have < need:
            try:
                b = next(it)
            except StopIteration:
                eof = True
                break
            b = np.asarray(b, dtype=np.float32)
            if b.size:
                parts.append(b)
                have += b.shape[0]
        buf = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts else np.zeros(0, np.float32))
        parts = [buf] if buf.size else []
        if eof and not split:
            if have / float(sr) <= max_chunk_sec:  # the official early return: one piece, no padding
                if have:
                    yield Piece(0, buf, 0, have)
                return
        split = True
        if eof and have <= max_len:  # the official loop ends: the tail
            yield Piece(index, pad(buf), start, have)
            return
        cut = max_len
        left = max(0, cut - expand)
        right = min(have, cut + expand)
        if right - left <= win:
            boundary = cut
        else:
            seg_abs = np.abs(buf[left:right])
            window_sums = np.convolve(seg_abs, np.ones(win, dtype=np.float32), mode="valid")
            min_pos = int(np.argmin(window_sums))
            inner = int(np.argmin(seg_abs[min_pos:min_pos + win]))
            boundary = left + min_pos + inner
        boundary = int(min(max(boundary, 1), have))
        yield Piece(index, pad(buf[:boundary].copy()), start, boundary)
        index += 1
        start += boundary
        rest = buf[boundary:]
        parts = [rest] if rest.size else []
        have = rest.shape[0]


def split_array(wav: np.ndarray, max_chunk_sec: float, sr: int = SAMPLE_RATE, block: int | None = None,
                **kw) -> list[tuple[np.ndarray, float]]:
    """split_audio_into_chunks' return shape ([(piece, offset_sec)]) from iter_pieces (for tests)."""
    wav = np.asarray(wav, dtype=np.float32)
    blocks = [wav] if not block else [wav[i:i + block] for i in range(0, len(wav), block)]
    return [(p.wav, p.start / float(sr)) for p in iter_pieces(blocks, max_chunk_sec, sr, **kw)]


# --------------------------------------------------------------------------- text
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\u0e00-\u0e7f"
                  r"\u3000-\u303f\uff00-\uffef]")


def join_texts(texts: Iterable[str]) -> str:
    """Pieces' texts joined: "" as the official package where a side is CJK/Thai or whitespace, else " "."""
    out = ""
    for t in texts:
        if not t:
            continue
        if out and not out[-1].isspace() and not t[0].isspace() and not _CJK.match(out[-1]) \
                and not _CJK.match(t[0]):
            out += " "
        out += t
    return out


def merge_languages(langs: Iterable[str]) -> str:
    """The official merge_languages: order kept, consecutive duplicates and empties dropped."""
    out: list[str] = []
    prev = None
    for x in langs:
        x = (x or "").strip()
        if not x or x == prev:
            continue
        out.append(x)
        prev = x
    return ",".join(out)


_SENT_END = re.compile(r"(?<=[.!?;。！？；])[\"'”’)\]]*\s+|(?<=[。！？；])")


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENT_END.split(text)]
    return [p for p in parts if p]


def sentence_times(text: str, start: float, end: float) -> list[dict]:
    """Sentences of a piece with times interpolated by character count (approximate inside a piece)."""
    sents = split_sentences(text)
    if not sents:
        return []
    weights = [max(1, len(re.sub(r"\s", "", s))) for s in sents]
    total = float(sum(weights))
    out, acc = [], 0
    for s, w in zip(sents, weights):
        a = start + (end - start) * acc / total
        acc += w
        b = end if acc == total else start + (end - start) * acc / total
        out.append({"start": round(a, 3), "end": round(b, 3), "text": s})
    return out


# --------------------------------------------------------------------------- transcription
@dataclass
class Segment:
    index: int
    start: float
    end: float
    text: str
    language: str
    raw: str
    token_ids: list[int]
    loop_stopped: bool = False
    sentences: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"id": self.index, "start": round(self.start, 3), "end": round(self.end, 3), "text": self.text,
                "language": self.language, "loop_stopped": self.loop_stopped, "raw": self.raw,
                "token_ids": self.token_ids, "sentences": self.sentences}


@dataclass
class LongResult:
    audio: str
    language: str
    text: str
    segments: list[Segment]
    timings: dict
    model: dict
    loops_stopped: int = 0

    @property
    def duration(self) -> float:
        return float(self.timings.get("audio_seconds", 0.0))

    def to_dict(self) -> dict:
        return {"audio": self.audio, "language": self.language, "text": self.text,
                "raw": "\n".join(s.raw for s in self.segments),
                "token_ids": [t for s in self.segments for t in s.token_ids],
                "segments": [s.to_dict() for s in self.segments], "loops_stopped": self.loops_stopped,
                "timings": self.timings, "model": self.model}


def transcribe_long(tr, path: str | os.PathLike, language: str | None = None, context: str = "",
                    max_new_tokens: int | None = None, piece_seconds: float = DEFAULT_PIECE_SECONDS,
                    repetition_guard: bool = True, bench_tokens: int | None = None,
                    on_piece: Callable[[Piece, Segment], None] | None = None,
                    info: SourceInfo | None = None, parallel: int = 1) -> LongResult:
    """Transcribe a file of any length piece by piece with a `Transcriber`; memory does not grow with length.

    `parallel` pieces are encoded one after another, then decoded together as parallel sequences
    of one llama.cpp context (`Transcriber.generate_many`); segments come out in order.
    """
    from .languages import normalize_language
    from .output import parse_asr_output

    if not (piece_seconds > 0):
        raise AsrggufError(f"piece length must be positive (got {piece_seconds})")
    lang = normalize_language(language)
    path = str(path)
    t_start = time.perf_counter()
    info = info or probe(path)
    t_read = [0.0]
    blocks = stream_16k(path, info, on_read=lambda s: t_read.__setitem__(0, t_read[0] + s))
    if parallel < 1:
        raise AsrggufError(f"--parallel must be at least 1 (got {parallel})")
    limit = max_new_tokens or tr.max_new_tokens
    totals = {"features": 0.0, "encoder": 0.0, "prefill": 0.0, "decode": 0.0, "prompt_tokens": 0,
              "generated_tokens": 0}
    segs: list[Segment] = []
    n_fft_half = tr.encoder.params.n_fft // 2
    n_samples = 0
    group: list[tuple[Piece, np.ndarray]] = []

    def decode_group():
        ids_list, t_dec = tr.generate_many([emb for _, emb in group], lang, context, limit, bench_tokens,
                                           repetition_guard)
        for k in ("prefill", "decode", "prompt_tokens", "generated_tokens"):
            totals[k] += t_dec[k]
        for (piece, _), ids, looped in zip(group, ids_list, t_dec["loops_stopped"]):
            raw = tr.decoder.detokenize(ids)
            out_lang, text = parse_asr_output(raw, lang, fix_repeats=repetition_guard)
            seg = Segment(piece.index, piece.start_s, piece.end_s, text, out_lang, raw, list(ids), looped)
            seg.sentences = sentence_times(text, seg.start, seg.end)
            segs.append(seg)
            if on_piece:
                on_piece(piece, seg)
        group.clear()

    for piece in iter_pieces(blocks, piece_seconds):
        n_samples = piece.start + piece.length
        if piece.wav.size <= n_fft_half:
            raise AsrggufError(f"{path}: audio is too short ({piece.wav.size} samples at 16 kHz)")
        emb, t_enc = tr.encode(piece.wav)
        piece.wav = None  # only the embeddings wait for the group's decode
        for k in ("features", "encoder"):
            totals[k] += t_enc[k]
        group.append((piece, emb))
        if len(group) == parallel:
            decode_group()
    if group:
        decode_group()
    wall = time.perf_counter() - t_start
    audio_s = n_samples / SAMPLE_RATE
    n_dec = sum(max(0, len(s.token_ids) - 1) for s in segs)
    timings = {"load": tr.load_s, "audio": t_read[0], **totals,
               "decode_tokens_per_s": n_dec / totals["decode"] if totals["decode"] > 0 and n_dec else 0.0,
               "audio_seconds": audio_s, "wall": wall, "rtf": wall / audio_s if audio_s else 0.0,
               "pieces": len(segs), "piece_seconds": piece_seconds}
    return LongResult(audio=path, language=merge_languages(s.language for s in segs),
                      text=join_texts(s.text for s in segs), segments=segs, timings=timings,
                      model=dict(tr.model_info), loops_stopped=sum(s.loop_stopped for s in segs))
