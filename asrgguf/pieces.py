"""Long audio cut into pieces at quiet points: the official `split_audio_into_chunks`, over a stream.

The official package cuts at the quietest 100 ms within +-5 s of every `max_chunk_sec` (1200 s there;
asrgguf's default is 30 s, docs/longform.md) and zero-pads pieces shorter than 0.5 s when it splits.
Its loop only ever looks at the samples from the current piece start to start + max_len + expand,
so `iter_pieces` runs it over a buffer of that size with the same numpy operations (same sums, same
argmin ties): the same pieces, with one piece and the search margin in memory.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple

import numpy as np

SAMPLE_RATE = 16000
OFFICIAL_MAX_PIECE_SECONDS = 1200.0   # the official MAX_ASR_INPUT_SECONDS
DEFAULT_PIECE_SECONDS = 30.0          # see docs/longform.md for the reasoning
SEARCH_EXPAND_SECONDS = 5.0
MIN_WINDOW_MS = 100.0
MIN_PIECE_SECONDS = 0.5               # the official MIN_ASR_INPUT_SECONDS


class Span(NamedTuple):
    """A stretch of a piece's wav that comes from one place in the recording (16-kHz samples)."""
    piece_start: int         # offset in the piece's wav
    start: int               # offset in the recording
    length: int

    @property
    def end(self) -> int:    # the recording's sample just after it
        return self.start + self.length


@dataclass
class Piece:
    index: int
    wav: np.ndarray          # what the model gets (zero-padded to 0.5 s when split, as officially)
    start: int               # first sample in the recording (16 kHz)
    length: int              # samples of the recording it covers (before padding)
    # None: wav is the recording's [start, start + length) (plus padding). Otherwise (speech regions packed by
    # asrgguf/vad.py) wav is these spans end to end, in order, then zero padding; start and length cover the
    # recording from the first span's start to the last one's end, gaps (non-speech left out) included.
    spans: tuple[Span, ...] | None = None

    @property
    def start_s(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return (self.start + self.length) / SAMPLE_RATE

    def _span_at(self, x: float, end: bool) -> Span:
        spans = self.spans
        k = max(0, bisect.bisect_right([s.piece_start for s in spans], x) - 1)
        if end and k > 0 and x <= spans[k].piece_start:   # an end on a boundary belongs to the span before
            k -= 1
        return spans[k]

    def recording_sample(self, n: int, end: bool = False) -> int:
        """The recording's sample for sample n of wav. In a piece made of spans, n is clamped to the span it
        falls in (padding maps to the last span's end); with end=True a boundary between two spans maps to the
        end of the first (an end time), else to the start of the second (a start time)."""
        if self.spans is None:
            return self.start + int(n)
        s = self._span_at(n, end)
        return s.start + min(max(int(n) - s.piece_start, 0), s.length)

    def recording_time(self, t: float, end: bool = False) -> float:
        """The recording's time (s) for time t (s) in wav: start_s + t, or through the spans as
        recording_sample (end=True for the end of a word or segment)."""
        if self.spans is None:
            return self.start_s + t
        x = round(t * SAMPLE_RATE, 6)   # in samples; rounded so a boundary given in seconds lands on it
        s = self._span_at(x, end)
        return (s.start + min(max(x - s.piece_start, 0.0), s.length)) / SAMPLE_RATE


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


def max_piece_samples(max_chunk_sec: float, sr: int = SAMPLE_RATE) -> int:
    """The longest piece iter_pieces can yield: a cut at most SEARCH_EXPAND_SECONDS after the nominal one."""
    return int(max_chunk_sec * sr) + int(SEARCH_EXPAND_SECONDS * sr)


def split_array(wav: np.ndarray, max_chunk_sec: float, sr: int = SAMPLE_RATE, block: int | None = None,
                **kw) -> list[tuple[np.ndarray, float]]:
    """split_audio_into_chunks' return shape ([(piece, offset_sec)]) from iter_pieces."""
    wav = np.asarray(wav, dtype=np.float32)
    blocks = [wav] if not block else [wav[i:i + block] for i in range(0, len(wav), block)]
    return [(p.wav, p.start / float(sr)) for p in iter_pieces(blocks, max_chunk_sec, sr, **kw)]
