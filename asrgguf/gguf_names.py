"""The one map between Qwen3-ASR tensor names and the GGUF names llama.cpp uses.

Canonical names are the official module names with the wrapper prefixes removed:
text decoder `embed_tokens.weight`, `layers.N.self_attn.q_proj.weight`, ..., `norm.weight`,
`lm_head.weight`; audio tower `conv2d1.weight`, `layers.N.fc1.bias`, `ln_post.weight`, ...
GGUF names follow llama.cpp: `qwen3vl` text (`token_embd`, `blk.N.attn_q`, ...) and the `qwen3a`
mmproj (`a.conv2d.1`, `a.blk.N.ln1`, `mm.a.mlp.1`, ...).
"""
from __future__ import annotations

import re

TEXT_ARCH = "qwen3vl"
MMPROJ_PROJECTOR = "qwen3a"

# asrgguf's own mmproj keys: what the encoder needs that llama.cpp hard-codes
KEY_N_WINDOW = "asrgguf.audio.n_window"
KEY_N_WINDOW_INFER = "asrgguf.audio.n_window_infer"
KEY_SAMPLE_RATE = "asrgguf.audio.sample_rate"
KEY_HOP_LENGTH = "asrgguf.audio.hop_length"
KEY_N_FFT = "asrgguf.audio.n_fft"
# what llama.cpp hard-codes for qwen3a (tools/mtmd: 100-frame chunks, 800-frame windows, Whisper mel)
AUDIO_DEFAULTS = {KEY_N_WINDOW: 50, KEY_N_WINDOW_INFER: 800, KEY_SAMPLE_RATE: 16000, KEY_HOP_LENGTH: 160,
                  KEY_N_FFT: 400}

_TEXT_LAYER = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_norm.weight": "attn_q_norm.weight",
    "self_attn.k_norm.weight": "attn_k_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_TEXT_GLOBAL = {"embed_tokens.weight": "token_embd.weight", "norm.weight": "output_norm.weight",
                "lm_head.weight": "output.weight"}

_AUDIO_LAYER = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.out_proj": "attn_out", "self_attn_layer_norm": "ln1", "final_layer_norm": "ln2",
    "fc1": "ffn_up", "fc2": "ffn_down",
}
_AUDIO_GLOBAL = {
    "conv2d1": "a.conv2d.1", "conv2d2": "a.conv2d.2", "conv2d3": "a.conv2d.3", "conv_out": "a.conv_out",
    "ln_post": "a.post_ln", "proj1": "mm.a.mlp.1", "proj2": "mm.a.mlp.2",
}
AUDIO_POSITION = "a.position_embd.weight"
# Qwen3-ForcedAligner: its Linear(hidden, classify_num) head is stored under the name llama.cpp's qwen3vl
# loads as an (optional) classifier head, with one label per class; llama.cpp only applies it for rank
# pooling, so with pooling none it returns the final states and asrgguf applies the head (align.py)
ALIGNER_HEAD = "cls.output.weight"
KEY_TIMESTAMP_TOKEN = "asrgguf.aligner.timestamp_token_id"
KEY_TIMESTAMP_MS = "asrgguf.aligner.timestamp_segment_time"  # sinusoids, written for llama.cpp; asrgguf recomputes them


def _invert(d: dict) -> dict:
    return {v: k for k, v in d.items()}


def text_to_gguf(name: str) -> str:
    if name in _TEXT_GLOBAL:
        return _TEXT_GLOBAL[name]
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", name)
    if m and m.group(2) in _TEXT_LAYER:
        return f"blk.{m.group(1)}.{_TEXT_LAYER[m.group(2)]}"
    raise KeyError(name)


def text_from_gguf(name: str) -> str:
    inv = _invert(_TEXT_GLOBAL)
    if name in inv:
        return inv[name]
    m = re.fullmatch(r"blk\.(\d+)\.(.+)", name)
    if m and m.group(2) in _invert(_TEXT_LAYER):
        return f"layers.{m.group(1)}.{_invert(_TEXT_LAYER)[m.group(2)]}"
    raise KeyError(name)


def audio_to_gguf(name: str) -> str:
    module, _, param = name.rpartition(".")
    if module in _AUDIO_GLOBAL:
        return f"{_AUDIO_GLOBAL[module]}.{param}"
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", module)
    if m and m.group(2) in _AUDIO_LAYER:
        return f"a.blk.{m.group(1)}.{_AUDIO_LAYER[m.group(2)]}.{param}"
    raise KeyError(name)


def audio_from_gguf(name: str) -> str:
    module, _, param = name.rpartition(".")
    inv = _invert(_AUDIO_GLOBAL)
    if module in inv:
        return f"{inv[module]}.{param}"
    m = re.fullmatch(r"a\.blk\.(\d+)\.(.+)", module)
    if m and m.group(2) in _invert(_AUDIO_LAYER):
        return f"layers.{m.group(1)}.{_invert(_AUDIO_LAYER)[m.group(2)]}.{param}"
    raise KeyError(name)


def split_checkpoint_name(name: str) -> tuple[str, str] | None:
    """Checkpoint tensor name (original or `*-hf` layout) -> ("text" | "audio", canonical name).

    Original: `thinker.model.X`, `thinker.audio_tower.X`, `thinker.lm_head.weight`.
    transformers-native: `model.language_model.X`, `model.audio_tower.X`, `lm_head.weight`
    (and the same without the leading `model.`). Returns None for tensors asrgguf does not use.
    """
    if "audio_tower." in name:
        return "audio", name.split("audio_tower.", 1)[1]
    if name.endswith("lm_head.weight"):
        return "text", "lm_head.weight"
    for prefix in ("thinker.", "model.", "language_model.", "model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if name.startswith(("layers.", "embed_tokens.", "norm.")):
        return "text", name
    return None
