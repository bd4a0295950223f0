"""Command-line options shared by several commands, and the run options checked into their API objects
(--vad ... -> VadOptions, --diarize ... -> DiarizeOptions; presentation: click only)."""
from __future__ import annotations

import click

from .errors import AsrggufError


def engine_options(f):
    """--device, --dtype, --n-gpu-layers, --threads, --no-native: where and how the model runs (run, serve, align)."""
    for opt in reversed([
        click.option("--device", default="auto", show_default=True, help="Encoder device: auto|cpu|cuda|mps."),
        click.option("--dtype", default="auto", show_default=True,
                     help="Encoder dtype: auto|float32|float16|bfloat16 (auto: float32 on CPU, float16 on GPU)."),
        click.option("--n-gpu-layers", type=int, default=None,
                     help="Decoder layers on the GPU (default: all when llama.cpp has a GPU backend)."),
        click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: all cores)."),
        click.option("--no-native", is_flag=True, help="llama.cpp's own q8_0 products instead of asrgguf's native "
                                                       "backend (also ASRGGUF_NO_NATIVE=1)."),
    ]):
        f = opt(f)
    return f


def diarize_options(on: bool, speakers, min_speakers, max_speakers, fmt: str):
    """--diarize and its counts -> DiarizeOptions (None without --diarize; its counts alone are an error)."""
    from .speakers import DiarizeOptions

    given = [n for n, v in (("speakers", speakers), ("min-speakers", min_speakers), ("max-speakers", max_speakers))
             if v is not None]
    if not on:
        if given:
            raise AsrggufError(f"--{given[0]} goes with --diarize")
        if fmt == "rttm":
            raise AsrggufError("--format rttm needs --diarize (the speaker turns)")
        return None
    if speakers and (min_speakers or max_speakers):
        raise AsrggufError("--speakers fixes the count: give it or --min-speakers/--max-speakers, not both")
    if min_speakers and max_speakers and min_speakers > max_speakers:
        raise AsrggufError(f"--min-speakers ({min_speakers}) is more than --max-speakers ({max_speakers})")
    return DiarizeOptions(speakers, min_speakers, max_speakers).checked()


def vad_options(on: bool, threshold, min_silence_ms, speech_pad_ms):
    """--vad and its settings -> VadOptions (None without --vad; its settings alone are an error)."""
    given = {k: v for k, v in (("threshold", threshold), ("min_silence_ms", min_silence_ms),
                               ("speech_pad_ms", speech_pad_ms)) if v is not None}
    if not on:
        if given:
            raise AsrggufError(f"--vad-{next(iter(given)).replace('_', '-')} goes with --vad")
        return None
    from .vad import VadOptions, model_path

    model_path()   # the extra missing: one line before anything loads
    return VadOptions(**given)
