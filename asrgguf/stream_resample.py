"""Resampling a live stream to 16 kHz, block by block, with the samples a whole-file resample gives.

`audio.iter_resampled` resamples a file as `librosa.resample` does (soxr HQ, then `fix_length` to
ceil(n * 16000 / sr) samples), holding back 4096 output samples in case the end is trimmed. A live
stream cannot wait that long (256 ms), and need not: whatever the total length, at least
ceil(n_in * 16000 / sr) samples are kept, so every output sample below that index is final and is
passed on at once. soxr's own filter delay (a few ms at HQ) is the only latency left.
"""
from __future__ import annotations

import math

import numpy as np

from .audio import SAMPLE_RATE


class StreamResampler:
    """push(block) -> the 16 kHz samples final so far; flush() -> the rest (the stream ends).

    The concatenation equals `librosa.resample(whole, orig_sr=sr, target_sr=16000)` (soxr HQ, fixed
    length) bit for bit. At 16 kHz it passes blocks through."""

    def __init__(self, sr: int, target_sr: int = SAMPLE_RATE):
        self.sr, self.target_sr = int(sr), int(target_sr)
        self.n_in = self.n_out = 0
        self._pending = np.zeros(0, np.float32)
        self._rs = None
        if self.sr != self.target_sr:
            import soxr

            self._rs = soxr.ResampleStream(self.sr, self.target_sr, 1, dtype="float32", quality="HQ")

    def _kept(self, n_in: int) -> int:
        return math.ceil(n_in * (float(self.target_sr) / self.sr))   # as audio.iter_resampled's `want`

    def push(self, block) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(block, dtype=np.float32).reshape(-1))
        self.n_in += x.size
        if self._rs is None:
            self.n_out += x.size
            return x
        y = self._rs.resample_chunk(x, last=False)
        if y.size:
            self._pending = np.concatenate([self._pending, y]) if self._pending.size else y
        ready = max(0, min(self._pending.size, self._kept(self.n_in) - self.n_out))
        out, self._pending = self._pending[:ready], self._pending[ready:]
        self.n_out += out.size
        return out

    def flush(self) -> np.ndarray:
        """The last samples, zero padded or trimmed to the whole-file length; the resampler is spent."""
        if self._rs is None:
            return np.zeros(0, np.float32)
        tail = np.concatenate([self._pending, self._rs.resample_chunk(np.zeros(0, np.float32), last=True)])
        want = self._kept(self.n_in) - self.n_out
        tail = tail[:want] if tail.size >= want else np.concatenate([tail, np.zeros(want - tail.size, np.float32)])
        self._pending = np.zeros(0, np.float32)
        self.n_out += tail.size
        return tail.astype(np.float32, copy=False)
