"""The log-mel of a growing 16 kHz stream, computed as samples arrive.

`LiveLogMel` holds the same numbers as `features.LogMel` (WhisperFeatureExtractor: Hann window of
400, hop 160, centred frames with reflect padding, the last STFT frame dropped, Slaney mel bank,
log10) for the samples received so far, at every moment, without recomputing the past:

* frame t covers samples [160 t - 200, 160 t + 200); once 160 t + 200 samples have arrived (and, for
  frame 0, more than 200) no later sample changes it: it is *stable* and computed once;
* the last frames (at most two) still reach into the reflect padding of the end of the audio: they
  are recomputed on every append, so the frames so far always equal `LogMel()(samples so far)` (the
  STFT bit for bit; the mel product to float32 rounding, since BLAS sums a product of a few columns in
  another order than one of a whole clip's);
* the log-mel's dynamic-range clamp, `max(v, max_all - 8)`, depends on the loudest value of the whole
  clip, which a stream knows only so far: the raw (unclamped) log10 values are kept, `peak` is the
  maximum over the frames so far (it only rises), and `features()` applies the clamp with a peak
  given or the current one. `encoder`-side consumers (`live_encoder.LiveEncoder`) record the floor
  each cached window was encoded with and know when a rise of the peak changed it.
"""
from __future__ import annotations

import numpy as np
import torch

from .features import LogMel


class LiveLogMel:
    """Raw log10 mel frames of a growing stream (stable frames cached) and the clip-wide clamp."""

    def __init__(self, logmel: LogMel | None = None):
        self.logmel = logmel or LogMel()
        lm = self.logmel
        self.hop, self.half = lm.hop_length, lm.n_fft // 2
        self.n_samples = 0
        self._stable = torch.empty((lm.n_mels, 0), dtype=torch.float32, device=lm.device)
        self.n_stable = 0                       # frames no later sample can change
        self._tail = self._stable[:, :0]        # the frames after them (recomputed each append)
        self._stable_peak = -float("inf")
        self._tail_peak = -float("inf")
        self._buf = np.zeros(0, np.float32)     # samples from sample offset self._buf_start on
        self._buf_start = 0
        self.frames_computed = 0                # STFT frames computed so far (work counter)

    # --- sizes
    @property
    def n_frames(self) -> int:
        """Frames of `LogMel()(samples so far)` (0 while the STFT cannot run: 200 samples or fewer)."""
        return self.n_samples // self.hop if self.n_samples > self.half else 0

    def _stable_count(self, n: int) -> int:
        return 0 if n <= self.half else (n - self.half) // self.hop + 1

    @property
    def peak(self) -> float:
        """The largest raw log10 value over the frames so far (the clamp's max)."""
        return max(self._stable_peak, self._tail_peak)

    # --- input
    def append(self, samples) -> None:
        """Add 16 kHz mono float32 samples (any count, zero included)."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size == 0:
            return
        self._buf = np.concatenate([self._buf, x]) if self._buf.size else x.copy()
        self.n_samples += x.size
        n = self.n_samples
        if n <= self.half:
            return
        s_old, s_new, n_fr = self.n_stable, self._stable_count(n), n // self.hop
        a = max(0, (s_old - 2) * self.hop)          # a whole number of hops: frame k of the segment is frame a/hop + k
        k0 = 2 if a > 0 else 0                      # frames 0 and 1 of a later segment see its own left padding
        seg = torch.from_numpy(self._buf[a - self._buf_start:]).to(self.logmel.device)
        raw = self._raw(seg)                        # frames a/hop .. n/hop (the last is dropped below)
        t0 = a // self.hop
        raw = raw[:, s_old - t0:n_fr - t0]          # frames s_old .. n_fr - 1 (k >= k0)
        self.frames_computed += raw.shape[1]
        new_stable, self._tail = raw[:, :s_new - s_old], raw[:, s_new - s_old:]
        if new_stable.shape[1]:
            self._stable = torch.cat([self._stable, new_stable], dim=1)
            self._stable_peak = max(self._stable_peak, float(new_stable.max()))
        self._tail_peak = float(self._tail.max()) if self._tail.shape[1] else -float("inf")
        self.n_stable = s_new
        keep = max(0, (s_new - 2) * self.hop)       # the next append starts its segment there
        if keep > self._buf_start:
            self._buf = self._buf[keep - self._buf_start:].copy()
            self._buf_start = keep

    def _raw(self, seg: torch.Tensor) -> torch.Tensor:
        """log10 mel power of the centred STFT frames of seg (as LogMel, before the clamp; all frames)."""
        lm = self.logmel
        stft = torch.stft(seg, lm.n_fft, lm.hop_length, window=lm.window, return_complex=True)
        power = stft.abs() ** 2
        return torch.clamp(lm.filters @ power, min=1e-10).log10()

    # --- output
    def raw(self, start: int = 0, stop: int | None = None) -> torch.Tensor:
        """Unclamped log10 frames [start, stop) of the frames so far, (n_mels, k)."""
        stop = self.n_frames if stop is None else stop
        if not 0 <= start <= stop <= self.n_frames:
            raise ValueError(f"frames [{start}, {stop}) are outside the {self.n_frames} frames so far")
        if stop <= self.n_stable:
            return self._stable[:, start:stop]
        if start >= self.n_stable:
            return self._tail[:, start - self.n_stable:stop - self.n_stable]
        return torch.cat([self._stable[:, start:], self._tail[:, :stop - self.n_stable]], dim=1)

    def features(self, start: int = 0, stop: int | None = None, peak: float | None = None) -> torch.Tensor:
        """Log-mel frames [start, stop) as `LogMel` gives them: clamped at (peak - 8), then (x + 4) / 4.

        peak None: the current one, so `features()` equals `LogMel()(samples so far)`."""
        peak = self.peak if peak is None else peak
        x = self.raw(start, stop)
        x = torch.maximum(x, torch.tensor(peak, dtype=x.dtype, device=x.device) - 8.0)
        return (x + 4.0) / 4.0

    @staticmethod
    def floor(peak: float) -> float:
        """The clamp's floor (in raw log10 units) for a given peak, as LogMel computes it in float32."""
        return float(torch.tensor(peak, dtype=torch.float32) - 8.0)
