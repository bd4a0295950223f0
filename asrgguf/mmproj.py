"""An mmproj GGUF's audio encoder sizes, read and checked without torch (so a bad file is reported
before anything slow loads)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import gguf_names as names
from .errors import AsrggufError


@dataclass(frozen=True)
class EncoderParams:
    """The audio encoder's sizes (the official audio_config names) and its feature settings."""
    num_mel_bins: int = 128
    d_model: int = 896
    encoder_layers: int = 18
    encoder_attention_heads: int = 14
    encoder_ffn_dim: int = 3584
    output_dim: int = 1024
    downsample_hidden_size: int = 480
    n_window: int = 50
    n_window_infer: int = 800
    max_source_positions: int = 1500
    sample_rate: int = 16000
    hop_length: int = 160
    n_fft: int = 400

    @property
    def chunk_frames(self) -> int:
        return 2 * self.n_window


def params_from_gguf(reader) -> EncoderParams:
    """The encoder's sizes from an mmproj's keys, checked against its tensors (one-line errors for a
    missing or corrupt key or tensor: nothing is built from sizes the file does not back)."""
    from .gguf_file import field

    src = getattr(reader, "path", "mmproj")
    proj = field(reader, "clip.audio.projector_type")
    if field(reader, "general.architecture") != "clip" or proj != names.MMPROJ_PROJECTOR:
        raise AsrggufError(f"{src}: not a Qwen3-ASR audio encoder (mmproj projector "
                           f"{proj!r}, expected {names.MMPROJ_PROJECTOR!r})")
    t = {x.name: x for x in reader.tensors}

    def num(key: str, hi: int = 1 << 20) -> int:
        v = field(reader, key, names.AUDIO_DEFAULTS.get(key))
        if v is None:
            raise AsrggufError(f"{src}: audio encoder key {key!r} is missing")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or int(v) != v or not 1 <= v <= hi:
            raise AsrggufError(f"{src}: audio encoder key {key!r} is {v!r}, expected an integer from 1 to {hi}")
        return int(v)

    def tensor(name: str):
        if name not in t:
            raise AsrggufError(f"{src}: audio encoder tensor {name!r} is missing")
        return t[name]

    def numel(x) -> int:
        return int(np.prod([int(n) for n in x.shape]))

    d = EncoderParams(
        num_mel_bins=num("clip.audio.num_mel_bins", 4096),
        d_model=num("clip.audio.embedding_length", 65536),
        encoder_layers=num("clip.audio.block_count", 1024),
        encoder_attention_heads=num("clip.audio.attention.head_count", 1024),
        encoder_ffn_dim=num("clip.audio.feed_forward_length"),
        output_dim=num("clip.audio.projection_dim", 65536),
        downsample_hidden_size=int(tensor("a.conv2d.1.weight").shape[-1]),
        n_window=num(names.KEY_N_WINDOW, 1 << 16),
        n_window_infer=num(names.KEY_N_WINDOW_INFER, 1 << 20),
        sample_rate=num(names.KEY_SAMPLE_RATE, 1_000_000),
        hop_length=num(names.KEY_HOP_LENGTH, 1 << 16),
        n_fft=num(names.KEY_N_FFT, 1 << 16),
    )
    if names.AUDIO_POSITION in t:
        d = EncoderParams(**{**d.__dict__, "max_source_positions": int(t[names.AUDIO_POSITION].shape[-1])})
    # the sizes must be the tensors' (the model built from them is then no larger than the file)
    f = (((d.num_mel_bins + 1) // 2 + 1) // 2 + 1) // 2
    want = {"a.post_ln.weight": d.d_model, "mm.a.mlp.2.weight": d.d_model * d.output_dim,
            "a.conv_out.weight": d.downsample_hidden_size * f * d.d_model,
            "a.blk.0.ffn_up.weight": d.d_model * d.encoder_ffn_dim,
            f"a.blk.{d.encoder_layers - 1}.attn_q.weight": d.d_model * d.d_model}
    for name, n in want.items():
        if numel(tensor(name)) != n:
            raise AsrggufError(f"{src}: audio encoder tensor {name!r} has {numel(t[name])} values; the file's "
                               f"keys say {n}")
    if f"a.blk.{d.encoder_layers}.attn_q.weight" in t:
        raise AsrggufError(f"{src}: audio encoder has more layers than its key 'clip.audio.block_count' "
                           f"({d.encoder_layers})")
    if d.max_source_positions < 13:
        raise AsrggufError(f"{src}: audio encoder position table has {d.max_source_positions} rows, at least 13 needed")
    if d.d_model % d.encoder_attention_heads:
        raise AsrggufError(f"{src}: audio encoder width {d.d_model} is not a multiple of its "
                           f"{d.encoder_attention_heads} attention heads")
    if d.n_window_infer < 2 * d.n_window or d.n_fft < 2:
        raise AsrggufError(f"{src}: audio encoder window keys are inconsistent (n_window {d.n_window}, "
                           f"n_window_infer {d.n_window_infer}, n_fft {d.n_fft})")
    return d


def check_mmproj(path: str | Path) -> EncoderParams:
    """Open an mmproj GGUF and check its keys and tensors (one-line AsrggufError when anything is off).

    The CLI checks before it probes the inputs and `Transcriber.from_gguf` again before it loads: the
    second check of an unchanged file (same size and modification time) is answered from a cache."""
    import os

    try:
        st = os.stat(path)
        key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _CHECKED:
        return _CHECKED[key]
    from .gguf_file import open_gguf

    params = params_from_gguf(open_gguf(path, "audio encoder (mmproj)"))
    if key is not None:
        _CHECKED.clear()
        _CHECKED[key] = params
    return params


_CHECKED: dict = {}
