"""Voice activity: Silero VAD over a stream of 16 kHz blocks, and pieces made of speech only.

The model is the silero-vad package's bundled ONNX file (`silero_vad/data/silero_vad.onnx`, run through
onnxruntime with one thread, as faster-whisper does); nothing is fetched at run time. It is run window by
window (512 samples, with the 64 samples before as context and its recurrent state carried over) as blocks
arrive, so the speech probabilities are those of silero-vad's own `get_speech_timestamps` whatever the
block sizes. `SpeechDetector` turns them into regions with the rules of silero-vad's
`get_speech_timestamps_from_probs` (thresholds, minimum speech and silence, maximum speech length with the
cut at the longest pause, padding), made incremental: a region is given out as soon as no later window can
change it, and only O(max_speech) samples of state are needed. `iter_speech_pieces` packs the regions,
in order, into pieces of at most `piece_seconds` whose `spans` map every sample back to the recording.
docs/speakers.md says why this package and these defaults.
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
from dataclasses import dataclass, replace
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from .errors import AsrggufError
from .pieces import DEFAULT_PIECE_SECONDS, MIN_PIECE_SECONDS, SAMPLE_RATE, Piece, Span

WINDOW = 512            # samples the 16-kHz model scores at a time (32 ms)
CONTEXT = 64            # samples of the previous window it sees before them
MISSING = "--vad needs silero-vad: pip install 'asrgguf[vad]'"


@dataclass(frozen=True)
class VadOptions:
    """Silero VAD's settings (faster-whisper's as the starting point; docs/speakers.md).

    threshold: a window whose speech probability is at least this starts (or continues) speech.
    neg_threshold: inside speech, a window below this is silence (None: threshold - 0.15, at least 0.01).
    min_speech_ms: speech regions this short or shorter are dropped.
    min_silence_ms: silence that ends a region (shorter pauses stay inside it).
    speech_pad_ms: added on both sides of each region (halved between regions closer than twice this).
    max_speech_seconds: longest region, cut at its longest pause (None: the piece length; never more).
    """
    threshold: float = 0.5
    neg_threshold: float | None = None
    min_speech_ms: float = 250
    min_silence_ms: float = 1000
    speech_pad_ms: float = 400
    max_speech_seconds: float | None = None

    def checked(self) -> "VadOptions":
        """Itself, or a one-line AsrggufError naming the first bad setting."""
        def num(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise AsrggufError(f"vad {name} must be a finite number (got {v!r})")
            return float(v)

        if not 0.0 < num("threshold") <= 1.0:
            raise AsrggufError(f"vad threshold must be in (0, 1] (got {self.threshold})")
        if self.neg_threshold is not None and not 0.0 < num("neg_threshold") <= self.threshold:
            raise AsrggufError(f"vad neg_threshold must be in (0, threshold={self.threshold}] "
                               f"(got {self.neg_threshold})")
        for name in ("min_speech_ms", "min_silence_ms", "speech_pad_ms"):
            if num(name) < 0:
                raise AsrggufError(f"vad {name} must be >= 0 (got {getattr(self, name)})")
        if self.max_speech_seconds is not None and num("max_speech_seconds") * SAMPLE_RATE <= \
                WINDOW + 2 * self.speech_pad_ms * SAMPLE_RATE / 1000:
            raise AsrggufError(f"vad max_speech_seconds must be longer than twice speech_pad_ms plus "
                               f"{WINDOW * 1000 // SAMPLE_RATE} ms (got {self.max_speech_seconds})")
        return self

    @property
    def negative(self) -> float:
        return max(self.threshold - 0.15, 0.01) if self.neg_threshold is None else float(self.neg_threshold)


def options_for(options: VadOptions | None, piece_seconds: float) -> VadOptions:
    """The options with max_speech_seconds set to at most the piece length (regions then fit a piece)."""
    o = (options or VadOptions()).checked()
    longest = piece_seconds if o.max_speech_seconds is None else min(o.max_speech_seconds, piece_seconds)
    if longest * SAMPLE_RATE <= WINDOW + 2 * o.speech_pad_ms * SAMPLE_RATE / 1000:
        raise AsrggufError(f"with --vad, piece_seconds ({piece_seconds}) must be longer than twice speech_pad_ms "
                           f"plus {WINDOW * 1000 // SAMPLE_RATE} ms")
    return replace(o, max_speech_seconds=float(longest))


# --------------------------------------------------------------------------- the model
def model_path() -> str:
    """The bundled ONNX model's path, found without importing silero_vad (whose import sets torch's thread
    count to 1 for the whole process)."""
    try:
        spec = importlib.util.find_spec("silero_vad")
    except (ImportError, ValueError):
        spec = None
    path = None
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(list(spec.submodule_search_locations)[0], "data", "silero_vad.onnx")
    if path is None or not os.path.isfile(path):
        raise AsrggufError(MISSING)
    return path


@functools.lru_cache(maxsize=1)
def _session(path: str):
    try:
        import onnxruntime
    except ImportError:
        raise AsrggufError(MISSING) from None
    so = onnxruntime.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(path, sess_options=so, providers=["CPUExecutionProvider"])


def session():
    """One onnxruntime session per process (its `run` is thread-safe; each stream keeps its own state)."""
    return _session(model_path())


class SileroStream:
    """Speech probabilities of consecutive 512-sample windows of one stream (state and context carried)."""

    def __init__(self) -> None:
        self._sess = session()
        self._state = np.zeros((2, 1, 128), np.float32)
        self._x = np.zeros((1, CONTEXT + WINDOW), np.float32)   # [context | window]
        self._sr = np.array(SAMPLE_RATE, np.int64)

    def __call__(self, window: np.ndarray) -> float:
        self._x[0, CONTEXT:] = window
        out, self._state = self._sess.run(None, {"input": self._x, "state": self._state, "sr": self._sr})
        self._x[0, :CONTEXT] = self._x[0, -CONTEXT:]
        return float(out[0, 0])


# --------------------------------------------------------------------------- regions
class Region(NamedTuple):
    """Speech from sample start to end (exclusive) of the recording, padding included."""
    start: int
    end: int


class SpeechDetector:
    """Silero VAD's speech regions of a stream fed in blocks of any size.

    `feed(block)` returns the regions that became final, `finish()` the rest; together they are exactly
    silero-vad's `get_speech_timestamps(whole recording, model, ...)` with these options. `keep_from` is
    the first sample a region not yet returned can start at (what a caller must still hold)."""

    def __init__(self, options: VadOptions | None = None, piece_seconds: float = DEFAULT_PIECE_SECONDS):
        o = options_for(options, piece_seconds)
        self.options = o
        sr = SAMPLE_RATE
        self._model = SileroStream()
        self._thr, self._neg = float(o.threshold), o.negative
        self._min_speech = sr * o.min_speech_ms / 1000
        self._pad = sr * o.speech_pad_ms / 1000
        self._max_speech = sr * o.max_speech_seconds - WINDOW - 2 * self._pad
        self._min_silence = sr * o.min_silence_ms / 1000
        self._min_silence_at_max = sr * 98 / 1000      # silero-vad's min_silence_at_max_speech (98 ms)
        self._tail = np.zeros(0, np.float32)             # samples of the next, incomplete window
        self.samples = 0                                 # samples fed so far
        self._i = 0                                      # windows scored so far
        # get_speech_timestamps_from_probs's loop state
        self._triggered = False
        self._cur: int | None = None                     # current_speech['start'] (None: {})
        self._temp_end = self._prev_end = self._next_start = 0
        self._possible_ends: list[tuple[int, int]] = []
        # its padding pass, one region behind: the last region found, with its padded start (its end is
        # final when the next region is found, or when none can start within 2 pads of it: _close_early)
        self._pending: list | None = None                # [padded start, raw end]
        self._out: list[Region] = []

    # the rules, window by window (silero-vad 6.2's get_speech_timestamps_from_probs, use_max_poss_sil
    # _at_max_speech=True, its default)
    def _step(self, p: float) -> None:
        cur = WINDOW * self._i
        self._i += 1
        if p >= self._thr and self._temp_end:
            sil = cur - self._temp_end
            if sil > self._min_silence_at_max:
                self._possible_ends.append((self._temp_end, sil))
            self._temp_end = 0
            if self._next_start < self._prev_end:
                self._next_start = cur
        if p >= self._thr and not self._triggered:
            self._triggered = True
            self._cur = cur
            return
        if self._triggered and cur - self._cur > self._max_speech:
            if self._possible_ends:
                self._prev_end, dur = max(self._possible_ends, key=lambda x: x[1])
                self._append(self._cur, self._prev_end)
                self._cur = None
                self._next_start = self._prev_end + dur
                if self._next_start < self._prev_end + cur:
                    self._cur = self._next_start
                else:
                    self._triggered = False
                self._prev_end = self._next_start = self._temp_end = 0
                self._possible_ends = []
            else:
                self._append(self._cur, cur)
                self._cur = None
                self._prev_end = self._next_start = self._temp_end = 0
                self._triggered = False
                self._possible_ends = []
                return
        if p < self._neg and self._triggered:
            if not self._temp_end:
                self._temp_end = cur
            if cur - self._temp_end < self._min_silence:
                return
            if self._temp_end - self._cur > self._min_speech:
                self._append(self._cur, self._temp_end)
            self._cur = None
            self._prev_end = self._next_start = self._temp_end = 0
            self._triggered = False
            self._possible_ends = []

    def _append(self, start: int, end: int) -> None:
        """A region found (raw bounds): pad the one before it, which is now final, and keep this one."""
        pad = self._pad
        if self._pending is None:   # the first region, or the one before was closed early (gap >= 2 pads)
            pstart = int(max(0, start - pad))
        else:
            pstart_prev, prev_end = self._pending
            gap = start - prev_end
            if gap < 2 * pad:
                self._out.append(Region(pstart_prev, prev_end + int(gap // 2)))
                pstart = int(max(0, start - gap // 2))
            else:
                self._out.append(Region(pstart_prev, int(prev_end + pad)))
                pstart = int(max(0, start - pad))
        self._pending = [pstart, end]

    def _close_early(self) -> None:
        """The pending region's end is final once no later region can start within 2 pads of it."""
        if self._pending is None:
            return
        nxt = self._cur if self._triggered else WINDOW * self._i
        if nxt >= self._pending[1] + 2 * self._pad:
            self._out.append(Region(self._pending[0], int(self._pending[1] + self._pad)))
            self._pending = None

    @property
    def speech_start(self) -> int | None:
        """The padded start of the speech in progress or not yet returned (None: silence so far)."""
        if self._pending is not None:
            return self._pending[0]
        if self._triggered and self._cur is not None:
            return int(max(0, self._cur - self._pad))
        return None

    @property
    def tentative_end(self) -> int | None:
        """The padded end the region in progress gets if the silence that began goes on (None: no silence
        began); a region is final only when the silence lasts `min_silence_ms` (live.py's speculative final)."""
        if self._triggered and self._temp_end and self._cur is not None and self._pending is None:
            return int(self._temp_end + self._pad)
        return None

    @property
    def keep_from(self) -> int:
        """The first sample of the recording that a region not yet returned can include."""
        if self._pending is not None:
            return self._pending[0]
        first = self._cur if self._triggered else WINDOW * self._i
        return max(0, math.floor(first - self._pad))

    def feed(self, block: np.ndarray) -> list[Region]:
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        self.samples += x.size
        if self._tail.size:
            x = np.concatenate([self._tail, x])
        n = x.size // WINDOW * WINDOW
        for k in range(0, n, WINDOW):
            self._step(self._model(x[k:k + WINDOW]))
            self._close_early()
        self._tail = x[n:].copy()
        out, self._out = self._out, []
        return out

    def finish(self) -> list[Region]:
        """The remaining regions (the last window zero-padded, as silero-vad pads it)."""
        if self._tail.size:
            w = np.zeros(WINDOW, np.float32)
            w[:self._tail.size] = self._tail
            self._step(self._model(w))
            self._tail = np.zeros(0, np.float32)
        n = self.samples
        if self._cur is not None and n - self._cur > self._min_speech:
            self._append(self._cur, n)
        self._cur, self._triggered = None, False
        if self._pending is not None:
            self._out.append(Region(self._pending[0], int(min(n, self._pending[1] + self._pad))))
            self._pending = None
        out, self._out = self._out, []
        return out


def speech_regions(blocks: Iterable[np.ndarray], options: VadOptions | None = None,
                   piece_seconds: float = DEFAULT_PIECE_SECONDS) -> list[Region]:
    """All speech regions of a stream of 16 kHz float32 blocks (for tools and tests; the engine uses
    iter_speech_pieces)."""
    det = SpeechDetector(options, piece_seconds)
    out: list[Region] = []
    for b in blocks:
        out += det.feed(b)
    return out + det.finish()


# --------------------------------------------------------------------------- pieces
class Tape:
    """The recording's samples from `base` on, appended block by block and dropped from the front."""

    def __init__(self) -> None:
        self._buf = np.zeros(SAMPLE_RATE, np.float32)
        self.base = 0      # recording offset of _buf[0]
        self._n = 0        # samples held

    def append(self, x: np.ndarray) -> None:
        if self._n + x.size > self._buf.size:
            grown = np.zeros(max(2 * self._buf.size, self._n + x.size), np.float32)
            grown[:self._n] = self._buf[:self._n]
            self._buf = grown
        self._buf[self._n:self._n + x.size] = x
        self._n += x.size

    def take(self, start: int, end: int) -> np.ndarray:
        assert self.base <= start <= end <= self.base + self._n, (self.base, start, end, self._n)
        return self._buf[start - self.base:end - self.base].copy()

    def drop_before(self, pos: int) -> None:
        k = min(max(0, pos - self.base), self._n)
        if k:
            self._buf[:self._n - k] = self._buf[k:self._n]
            self._n -= k
            self.base += k
        if self._buf.size > 4 * SAMPLE_RATE and self._n < self._buf.size // 4:   # give memory back
            self._buf = self._buf[:max(self._n * 2, SAMPLE_RATE)].copy()


class Packer:
    """Speech regions (recording offset, samples), in order, packed into pieces of at most `limit`
    samples: a piece ends when the next region does not fit (a region longer than a piece is cut)."""

    def __init__(self, limit: int, min_len: int = int(MIN_PIECE_SECONDS * SAMPLE_RATE)):
        self.limit, self.min_len = int(limit), int(min_len)
        self._parts: list[np.ndarray] = []
        self._spans: list[Span] = []
        self._len = 0
        self._index = 0

    def add(self, start: int, wav: np.ndarray) -> Iterator[Piece]:
        for k in range(0, wav.size, self.limit):
            part = wav[k:k + self.limit]
            if self._len + part.size > self.limit:
                yield self.flush()
            s = self._spans[-1] if self._spans else None
            if s is not None and s.end == start + k:     # contiguous in the recording: one span
                self._spans[-1] = Span(s.piece_start, s.start, s.length + part.size)
            else:
                self._spans.append(Span(self._len, start + k, part.size))
            self._parts.append(part)
            self._len += part.size

    def flush(self) -> Piece:
        wav = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        if wav.size < self.min_len:   # zero-padded to 0.5 s, as the official pads short split pieces
            wav = np.pad(wav, (0, self.min_len - wav.size)).astype(np.float32)
        spans = tuple(self._spans)
        piece = Piece(self._index, wav, spans[0].start, spans[-1].end - spans[0].start, spans)
        self._index += 1
        self._parts, self._spans, self._len = [], [], 0
        return piece

    def close(self) -> Iterator[Piece]:
        if self._parts:
            yield self.flush()


def iter_speech_pieces(blocks: Iterable[np.ndarray], piece_seconds: float = DEFAULT_PIECE_SECONDS,
                       options: VadOptions | None = None, pack: bool = True) -> Iterator[Piece]:
    """Pieces made only of speech: Silero VAD's regions of a stream of 16 kHz float32 blocks, packed in
    order up to piece_seconds each (regions are at most that long: max_speech_seconds is capped by it);
    pack=False gives one region per piece (the demo model stops after the first region of a packed piece:
    docs/speakers.md).

    Each piece's `spans` give, for each stretch of its wav, where it lies in the recording; use
    `piece.recording_time(t)` (end=True for end times) to map a time in the piece back. No speech: no
    piece. Memory: the current piece, the open region and a block (flat over hours)."""
    if not piece_seconds or piece_seconds <= 0:
        raise AsrggufError(f"piece_seconds must be > 0 (got {piece_seconds})")
    det = SpeechDetector(options, piece_seconds)
    tape = Tape()
    packer = Packer(int(piece_seconds * SAMPLE_RATE))

    def add(r: Region) -> Iterator[Piece]:
        yield from packer.add(r.start, tape.take(r.start, r.end))
        if not pack:
            yield from packer.close()

    for block in blocks:
        x = np.asarray(block, dtype=np.float32).reshape(-1)
        tape.append(x)
        for r in det.feed(x):
            yield from add(r)
        tape.drop_before(det.keep_from)
    for r in det.finish():
        yield from add(r)
    yield from packer.close()
