"""Command-line options shared by several commands (presentation: click only)."""
from __future__ import annotations

import click


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
