"""Log-mel features equal to the official processor's (WhisperFeatureExtractor, torch path)."""
from __future__ import annotations

import functools

import numpy as np
import torch


def _hz_to_mel(f):
    """Slaney mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    f = np.asarray(f, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    mel = f / f_sp
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mel)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=8)
def mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, 1 + n_fft/2) triangular filters, Slaney scale and area normalisation, float64.

    The filter bank of Whisper's feature extractor (and librosa.filters.mel(htk=False,
    norm="slaney")); computed here so that transcribing needs no librosa import (about 1.5 s).
    """
    fft_freqs = np.fft.rfftfreq(n=n_fft, d=1.0 / sample_rate)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2.0), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fft_freqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2:n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights


def n_frames(n_samples: int, hop_length: int = 160) -> int:
    """Mel frames the official processor makes for n_samples (STFT frames less the last one)."""
    return n_samples // hop_length


class LogMel:
    """waveform (16 kHz float32) -> (n_mels, n_samples // hop) log-mel, on `device`, float32."""

    def __init__(self, n_mels: int = 128, n_fft: int = 400, hop_length: int = 160, sample_rate: int = 16000,
                 device: str | torch.device = "cpu"):
        self.n_mels, self.n_fft, self.hop_length, self.sample_rate = n_mels, n_fft, hop_length, sample_rate
        self.device = torch.device(device)
        self.window = torch.hann_window(n_fft, device=self.device)
        self.filters = torch.from_numpy(mel_filters(sample_rate, n_fft, n_mels)).to(self.device, torch.float32)

    def __call__(self, wav: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(wav, dtype=torch.float32).to(self.device)
        if x.numel() <= self.n_fft // 2:
            raise ValueError(f"audio is too short ({x.numel()} samples; the STFT needs more than {self.n_fft // 2})")
        stft = torch.stft(x, self.n_fft, self.hop_length, window=self.window, return_complex=True)
        power = stft[..., :-1].abs() ** 2
        mel = self.filters @ power
        log_spec = torch.clamp(mel, min=1e-10).log10()
        log_spec = torch.maximum(log_spec, log_spec.max() - 8.0)
        return (log_spec + 4.0) / 4.0
