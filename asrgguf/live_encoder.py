"""The audio encoder over a growing 16 kHz stream, each completed 8-s attention window encoded once.

The encoder attends inside windows of `n_window_infer` mel frames (800: 8 s) made of whole conv
chunks (100 frames), so its output rows for a window depend on that window's features only
(`encoder.AudioEncoder`). `LiveEncoder` keeps the log-mel of the utterance so far
(`live_features.LiveLogMel`), encodes a window once all its frames are stable, caches its rows, and
on each `step()` encodes only the open window (the frames after the last completed one): the work of
a step is bounded by one window plus the windows completed since the previous step, whatever the
length of the stream.

The clamp. The log-mel clamps every value at (max over the clip - 8). A window cached under a
lower peak gives other features than the offline clip once the peak has risen past one of its
values. Each cached window records the floor it was encoded with and its smallest raw value;
after a rise of the peak, it is *stale* when its smallest value lies below the new floor (its
features changed). `step()` leaves stale windows as they are (the partial transcript sees
slightly different features for them), `step(refresh=n)` re-encodes at most n of them (bounded
work), and `step(exact=True)` re-encodes all of them, so its embeddings equal the offline
encoder's on `LogMel()(samples so far)` (float32 rounding apart): the final pass of an utterance
uses it. In read speech the peak rises a few times a minute, each time a louder vowel comes, and
most cached windows hold a clamped (quiet) value, so a rise makes most of them stale: with
refresh=1 the steps after a rise catch up and the final finds few left
(bench/live_clamp_stats.py counts them; docs/streaming.md has figures).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .encoder import AudioEncoder, output_length
from .features import LogMel
from .live_features import LiveLogMel


@dataclass
class EncoderStep:
    """The encoder's output for the utterance so far, after one `LiveEncoder.step`."""
    embeddings: np.ndarray   # (output_length(n_frames), output_dim) float32: cached windows, then the open one
    n_cached: int            # leading rows from completed (cached) windows
    changed_from: int        # rows before it are the previous step's, unchanged (keep their KV cache)
    frames_encoded: int      # mel frames run through the encoder by this step
    exact: bool              # every cached window encoded with the current clamp floor
    n_frames: int            # mel frames so far
    stale: list[int] = field(default_factory=list)      # cached windows whose features the peak has changed
    refreshed: list[int] = field(default_factory=list)  # stale windows this step re-encoded


@dataclass
class _Window:
    rows: np.ndarray         # (window_rows, output_dim)
    floor: float             # clamp floor (raw log10) the rows were encoded with
    min_raw: float           # smallest raw log10 value of the window's frames


class LiveEncoder:
    """Incremental log-mel + encoder for one utterance: `feed(samples)`, then `step()` when a decode
    step needs the embeddings so far. A new utterance takes a new `LiveEncoder`."""

    def __init__(self, encoder: AudioEncoder, logmel: LogMel | None = None):
        p = encoder.params
        self.encoder = encoder
        self.mel = LiveLogMel(logmel or LogMel(p.num_mel_bins, p.n_fft, p.hop_length, p.sample_rate,
                                               device=encoder.device))
        self.window = p.n_window_infer                  # mel frames per attention window (800)
        self.chunk = p.chunk_frames                     # mel frames per conv chunk (100)
        self.window_rows = encoder.window_frames()      # encoder rows per window (104)
        self._windows: list[_Window] = []
        self._prev_rows = 0                             # rows the previous step returned
        self._open_encoded_until = -1                   # n_frames at the last open-window encode
        self._open_rows: np.ndarray | None = None
        self._open_floor: float | None = None           # clamp floor of the last open-window encode
        self.frames_encoded = 0                         # mel frames encoded over the utterance (work counter)

    # --- input
    def feed(self, samples) -> None:
        """Append 16 kHz mono float32 samples (any block size)."""
        self.mel.append(samples)

    @property
    def n_samples(self) -> int:
        return self.mel.n_samples

    @property
    def n_complete(self) -> int:
        """Windows whose frames are all stable (the encoder output of each never changes but by the clamp)."""
        return self.mel.n_stable // self.window

    def stale_windows(self) -> list[int]:
        floor = LiveLogMel.floor(self.mel.peak)
        return [i for i, w in enumerate(self._windows) if w.floor != floor and w.min_raw < floor]

    # --- output
    def step(self, exact: bool = False, refresh: int = 0) -> EncoderStep:
        """Encode the windows completed since the last step and the open window, and first the stale
        windows: all of them with exact=True, else at most `refresh` (the oldest); return the
        embeddings of the utterance so far."""
        mel, W = self.mel, self.window
        n_frames = mel.n_frames
        peak = mel.peak
        floor = LiveLogMel.floor(peak)
        todo = list(range(len(self._windows), self.n_complete))
        refresh = self.stale_windows() if exact else self.stale_windows()[:max(0, int(refresh))]
        open_start = self.n_complete * W
        open_frames = n_frames - open_start
        open_changed = open_frames > 0 and (bool(todo) or n_frames != self._open_encoded_until
                                            or self._open_floor != floor)
        parts = [mel.features(i * W, (i + 1) * W, peak) for i in refresh + todo]
        if open_changed:
            parts.append(mel.features(open_start, n_frames, peak))
        encoded = sum(x.shape[1] for x in parts)
        rows = self._encode(torch.cat(parts, dim=1)) if parts else None
        r = 0
        for i in refresh + todo:
            win = _Window(rows[r:r + self.window_rows], floor, float(mel.raw(i * W, (i + 1) * W).min()))
            if i < len(self._windows):
                self._windows[i] = win
            else:
                self._windows.append(win)
            r += self.window_rows
        if open_changed:
            self._open_rows = rows[r:]
            self._open_encoded_until, self._open_floor = n_frames, floor
        elif open_frames <= 0:
            self._open_rows = None
        self.frames_encoded += encoded
        emb_parts = [w.rows for w in self._windows]
        if self._open_rows is not None:
            emb_parts.append(self._open_rows)
        d = self.encoder.params.output_dim
        emb = np.concatenate(emb_parts) if emb_parts else np.zeros((0, d), np.float32)
        assert emb.shape[0] == (output_length(n_frames, self.chunk) if n_frames else 0)
        n_cached = len(self._windows) * self.window_rows
        first = [i * self.window_rows for i in refresh + todo]
        if open_changed:
            first.append(n_cached)
        changed_from = min(first + [self._prev_rows, emb.shape[0]])
        self._prev_rows = emb.shape[0]
        stale = self.stale_windows()
        return EncoderStep(emb, n_cached, changed_from, encoded, not stale, n_frames, stale, refresh)

    def final(self) -> EncoderStep:
        """The exact step: what the offline encoder gives on the utterance's whole audio so far."""
        return self.step(exact=True)

    def _encode(self, feats: torch.Tensor) -> np.ndarray:
        """Whole windows then the open tail in one encoder call: each window attends to itself only."""
        return self.encoder(feats).float().cpu().numpy()
