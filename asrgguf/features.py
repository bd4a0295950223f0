"""Log-mel features equal to the official processor's (WhisperFeatureExtractor, torch path)."""
from __future__ import annotations

import functools

import numpy as np
import torch


@functools.lru_cache(maxsize=8)
def _mel_filters(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    import librosa

    # Slaney mel scale and area normalisation, as Whisper's feature extractor (float64, then float32)
    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=0.0, fmax=sample_rate / 2,
                               htk=False, norm="slaney", dtype=np.float64)


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
        self.filters = torch.from_numpy(_mel_filters(sample_rate, n_fft, n_mels)).to(self.device, torch.float32)

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
