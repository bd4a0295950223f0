#!/usr/bin/env python3
"""Make a complete random-weight Qwen3-ASR checkpoint directory with the official classes.

The directory is what `Qwen/Qwen3-ASR-*` publishes: config.json, safetensors (sharded when
large), the Qwen2 byte-level BPE tokenizer with Qwen3-ASR's special tokens at their real ids,
the chat template and preprocessor_config.json. The official `qwen-asr` package loads and
runs it (layout "original"); `--layout hf` renames the tensors to the transformers-native
`*-hf` layout, which only converters read.

The tokenizer is the real Qwen2 BPE (vocab.json + merges.txt in tests/support/data/qwen2-bpe.tar.xz,
taken from llama.cpp's models/ggml-vocab-qwen2.gguf), so llama.cpp's own converter recognises it.

Weights are scaled (not the default 0.02 init) so that greedy output depends on the audio
and varies from step to step: every linear layer has std 1/sqrt(fan_in) (activations keep their
scale), token embeddings std 1, and the output head a gain that spreads the logits.

    python tests/support/random_checkpoint.py OUT --size tiny [--mha] [--tied] [--layout hf]
    python tests/support/random_checkpoint.py OUT --size 0.6b
    python tests/support/random_checkpoint.py OUT --aligner [--size tiny|aligner-0.6b]

`--aligner` writes a Qwen3-ForcedAligner checkpoint: the thinker config's model_type is
"qwen3_forced_aligner", the head is Linear(hidden, classify_num) (5000 classes of
timestamp_segment_time = 80 ms), and the tokenizer has `<timestamp>` at id 151705, as published.
`Qwen3ForcedAligner.from_pretrained` loads it. The head is measured on a synthetic input so that the
class at a `<timestamp>` position follows what varies there (audio, text, position); see
center_aligner_head. `--size aligner-0.6b` gives the published aligner's shapes (audio tower as 1.7B's).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BPE_ARCHIVE = HERE / "data" / "qwen2-bpe.tar.xz"

# ids 151643.. of the real Qwen3-ASR tokenizer; names we don't know are reserved fillers
_KNOWN_ADDED = {
    151643: "<|endoftext|>", 151644: "<|im_start|>", 151645: "<|im_end|>",
    151646: "<|object_ref_start|>", 151647: "<|object_ref_end|>", 151648: "<|box_start|>",
    151649: "<|box_end|>", 151650: "<|quad_start|>", 151651: "<|quad_end|>",
    151652: "<|vision_start|>", 151653: "<|vision_end|>", 151654: "<|vision_pad|>",
    151655: "<|image_pad|>", 151656: "<|video_pad|>", 151657: "<tool_call>", 151658: "</tool_call>",
    151659: "<|fim_prefix|>", 151660: "<|fim_middle|>", 151661: "<|fim_suffix|>",
    151662: "<|fim_pad|>", 151663: "<|repo_name|>", 151664: "<|file_sep|>",
    151665: "<tool_response>", 151666: "</tool_response>", 151667: "<think>", 151668: "</think>",
    151669: "<|audio_start|>", 151670: "<|audio_end|>", 151676: "<|audio_pad|>",
    151704: "<asr_text>", 151705: "<timestamp>",
}
FIRST_ADDED, LAST_ADDED = 151643, 151704
TIMESTAMP_ID, TIMESTAMP_MS, CLASSIFY_NUM = 151705, 80, 5000   # Qwen3-ForcedAligner-0.6B's config
NOT_SPECIAL = {"<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<think>",
               "</think>", "<asr_text>", "<timestamp>"}

CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}{{- message['content'] -}}"
    "{%- else -%}{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'audio' -%}{{- '<|audio_start|><|audio_pad|><|audio_end|>' -}}"
    "{%- elif part['type'] == 'text' -%}{{- part['text'] -}}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}"
)

AUDIO_COMMON = dict(num_mel_bins=128, downsample_hidden_size=480, n_window=50, n_window_infer=800,
                    conv_chunksize=500, max_source_positions=1500, activation_function="gelu")
TEXT_COMMON = dict(num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, head_dim=128,
                   rope_theta=1e6, vocab_size=151936, rms_norm_eps=1e-6, hidden_act="silu",
                   max_position_embeddings=65536,
                   rope_scaling={"rope_type": "default", "mrope_section": [24, 20, 20],
                                 "interleaved": True, "mrope_interleaved": True})
SIZES = {
    "0.6b": (dict(AUDIO_COMMON, d_model=896, encoder_layers=18, encoder_attention_heads=14,
                  encoder_ffn_dim=3584, output_dim=1024),
             dict(TEXT_COMMON, hidden_size=1024, intermediate_size=3072, tie_word_embeddings=True)),
    "1.7b": (dict(AUDIO_COMMON, d_model=1024, encoder_layers=24, encoder_attention_heads=16,
                  encoder_ffn_dim=4096, output_dim=2048),
             dict(TEXT_COMMON, hidden_size=2048, intermediate_size=6144, tie_word_embeddings=True)),
    # tiny: 4 encoder layers (llama.cpp's converter needs >= 4), several 100-frame chunks per window
    "tiny": (dict(AUDIO_COMMON, d_model=64, encoder_layers=4, encoder_attention_heads=4,
                  encoder_ffn_dim=128, output_dim=64, downsample_hidden_size=32),
             dict(TEXT_COMMON, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  rope_scaling={"rope_type": "default", "mrope_section": [4, 2, 2],
                                "interleaved": True, "mrope_interleaved": True},
                  tie_word_embeddings=False)),
}
# the published Qwen3-ForcedAligner-0.6B: the 1.7B's audio tower with output 1024, the 0.6B's decoder
# untied, vocabulary 152064
SIZES["aligner-0.6b"] = (dict(SIZES["1.7b"][0], output_dim=1024),
                         dict(TEXT_COMMON, hidden_size=1024, intermediate_size=3072, vocab_size=152064,
                              tie_word_embeddings=False))
# a narrower tiny model (decoder width 32): for mismatched-pair tests
SIZES["tiny32"] = (dict(SIZES["tiny"][0], output_dim=32),
                   dict(SIZES["tiny"][1], hidden_size=32, num_attention_heads=2, num_key_value_heads=1))


def qwen2_tokenizer(vocab_file: str, merges_file: str):
    """A Qwen2 byte-level BPE tokenizer as Qwen3-ASR's tokenizer_config makes it (roles named later)."""
    from transformers import Qwen2TokenizerFast

    return Qwen2TokenizerFast(vocab_file=vocab_file, merges_file=merges_file, unk_token=None, bos_token=None,
                              eos_token=None, pad_token=None, errors="replace",
                              clean_up_tokenization_spaces=False, model_max_length=131072)


def make_tokenizer(aligner: bool = False):
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(BPE_ARCHIVE) as tar:
        tar.extractall(tmp, filter="data")
        tok = qwen2_tokenizer(os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt"))
    assert len(tok) == FIRST_ADDED, len(tok)
    last = TIMESTAMP_ID if aligner else LAST_ADDED
    add_special_tokens(tok, [_KNOWN_ADDED.get(i, f"<|reserved_{i}|>") for i in range(FIRST_ADDED, last + 1)])
    assert all(tok.convert_tokens_to_ids(name) == i for i, name in _KNOWN_ADDED.items() if i <= last)
    return tok


def add_special_tokens(tok, names: list[str]):
    """Append Qwen3-ASR's added tokens (in this order, from id len(tok) on) and name its roles."""
    from transformers import AddedToken

    for name in names:
        added = AddedToken(name, special=name not in NOT_SPECIAL, normalized=False)
        n = len(tok)
        tok.add_tokens([added], special_tokens=name not in NOT_SPECIAL)
        assert tok.convert_tokens_to_ids(name) == n, (name, n)
    tok.eos_token, tok.pad_token = "<|im_end|>", "<|endoftext|>"
    extra = {"audio_token": "<|audio_pad|>", "audio_bos_token": "<|audio_start|>",
             "audio_eos_token": "<|audio_end|>"}
    tok.extra_special_tokens = extra
    tok._set_model_specific_special_tokens(special_tokens=extra)
    return tok


def make_processor(tok):
    """The official processor: Whisper log-mel (128 bins) + the tokenizer + the audio chat template."""
    from transformers import WhisperFeatureExtractor
    from qwen_asr.core.transformers_backend import Qwen3ASRProcessor

    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, chunk_length=30,
                                 n_fft=400, padding_value=0.0, return_attention_mask=True, dither=0.0)
    return Qwen3ASRProcessor(feature_extractor=fe, tokenizer=tok, chat_template=CHAT_TEMPLATE)


def make_config(size: str, mha: bool = False, tied: bool | None = None, text_layers: int | None = None,
                audio_layers: int | None = None, aligner: bool = False, classify_num: int = CLASSIFY_NUM):
    from qwen_asr.core.transformers_backend import Qwen3ASRConfig
    from qwen_asr.inference.utils import SUPPORTED_LANGUAGES

    audio, text = (dict(d) for d in SIZES[size])
    if mha:
        text["num_key_value_heads"] = text["num_attention_heads"]
    if tied is not None:
        text["tie_word_embeddings"] = tied
    if text_layers:
        text["num_hidden_layers"] = text_layers
    if audio_layers:
        audio["encoder_layers"] = audio_layers
    tie = text["tie_word_embeddings"]
    thinker = dict(audio_config=audio, text_config=text, audio_token_id=151676,
                   audio_start_token_id=151669, user_token_id=872, tie_word_embeddings=tie)
    top = {}
    if aligner:
        thinker.update(model_type="qwen3_forced_aligner", classify_num=classify_num, audio_end_token_id=151670,
                       timestamp_token_id=TIMESTAMP_ID, timestamp_segment_time=TIMESTAMP_MS)
        top = dict(timestamp_token_id=TIMESTAMP_ID, timestamp_segment_time=TIMESTAMP_MS)
    cfg = Qwen3ASRConfig(thinker_config=thinker, support_languages=list(SUPPORTED_LANGUAGES), **top)
    cfg.architectures = ["Qwen3ASRForConditionalGeneration"]
    cfg.tie_word_embeddings = tie
    return cfg


def draw_weight(name: str, shape, g, tied: bool, head_gain: float = 4.0):
    """One random parameter at a scale that keeps a random model's activations and logits usable."""
    import torch

    t = torch.randn(shape, generator=g)
    if name.endswith("embed_tokens.weight"):
        # tied: the head is the embedding, so a large embedding makes the input token win
        # every step; a small one lets the layers (and the audio) decide
        return t * (0.02 if tied else 1.0)
    if name.endswith("lm_head.weight"):
        return t * head_gain / math.sqrt(shape[1])
    if len(shape) >= 2:  # linear and conv: keep activations at unit scale
        return t / math.sqrt(t[0].numel())
    if "norm" in name or "ln_post" in name:
        return 1.0 + 0.1 * t if name.endswith(".weight") else 0.1 * t
    return 0.1 * t  # biases


def scale_weights(model, seed: int, head_gain: float = 4.0, aligner: bool = False):
    import torch

    g = torch.Generator().manual_seed(seed)
    text_cfg = model.config.thinker_config.text_config
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(draw_weight(name, p.shape, g, text_cfg.tie_word_embeddings, head_gain))
        if text_cfg.tie_word_embeddings:
            model.thinker.lm_head.weight = model.thinker.model.embed_tokens.weight
        if aligner:
            # sharper decoder attention: a <timestamp> row then gathers particular audio frames rather
            # than the mean of everything before it, so its state (and class) follows the audio
            for name, p in model.named_parameters():
                if name.startswith("thinker.model.") and ("q_norm" in name or "k_norm" in name):
                    p.mul_(2.5)
            return  # the head is set by center_aligner_head
        # a random model that stops after two words tests little: damp the end-of-turn logits
        head = model.thinker.lm_head.weight
        for tok in (151643, 151645):
            if tok < head.shape[0]:
                head[tok] *= 0.3


def center_aligner_head(model, processor, seed: int) -> None:
    """A head blind to the direction every <timestamp> state shares.

    A random decoder's final states at the <timestamp> positions are mostly one common vector (at the
    tiny shape: norm ~8 against ~0.5 of variation), so a random head gives one class nearly everywhere.
    The common direction is measured on a synthetic input (noise bursts and 80 words) and removed from
    random class rows, scaled so the logits spread: the class follows what varies (audio, text, position).
    """
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    sr = 16000
    env = np.repeat(rng.uniform(0, 1, 80) > 0.4, sr // 8).astype(np.float32)
    wav = (rng.standard_normal(env.size).astype(np.float32) * 0.1 * env)
    words = "the quick brown fox jumps over a lazy dog near river bank while birds sing".split()
    units = [words[i] for i in rng.integers(0, len(words), 80)]
    text = "<|audio_start|><|audio_pad|><|audio_end|>" + "".join(u + "<timestamp><timestamp>" for u in units)
    inp = processor(text=[text], audio=[wav], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = model.thinker(**inp, output_hidden_states=True)
        h = out.hidden_states[-1][0][inp["input_ids"][0] == TIMESTAMP_ID].double()
        H = h.shape[1]
        m = h.mean(0)
        m = m / m.norm()
        p0 = torch.eye(H, dtype=torch.float64) - torch.outer(m, m)
        spread = (h @ p0).norm(dim=1).mean()
        g = torch.Generator().manual_seed(seed + 7)
        R = torch.randn(model.thinker.lm_head.weight.shape, generator=g, dtype=torch.float64) * 4.0 / math.sqrt(H)
        model.thinker.lm_head.weight.copy_((R @ p0 * (math.sqrt(H) / spread)).to(model.thinker.lm_head.weight.dtype))


def hf_layout_name(name: str) -> str:
    """Original tensor name -> transformers-native (`*-hf`) name."""
    for old, new in (("thinker.model.", "model.language_model."), ("thinker.audio_tower.", "model.audio_tower."),
                     ("thinker.lm_head.", "lm_head.")):
        if name.startswith(old):
            return new + name[len(old):]
    raise ValueError(name)


def write_checkpoint(out: Path, size: str = "tiny", seed: int = 0, mha: bool = False, tied: bool | None = None,
                     layout: str = "original", shard_size: str = "2GB", text_layers: int | None = None,
                     audio_layers: int | None = None, dtype: str | None = None, skeleton: bool = False,
                     aligner: bool = False, head_gain: float | None = None,
                     classify_num: int = CLASSIFY_NUM) -> Path:
    import torch
    from qwen_asr.core.transformers_backend import Qwen3ASRForConditionalGeneration

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = dtype or ("float32" if size.startswith("tiny") else "bfloat16")
    if aligner and tied:
        raise ValueError("an aligner's head is its own (classify_num rows): it cannot be tied")
    cfg = make_config(size, mha=mha, tied=False if aligner else tied, text_layers=text_layers,
                      audio_layers=audio_layers, aligner=aligner, classify_num=classify_num)
    if skeleton:  # config and processor only: tools/cuda/fill_random.py (commit fc8c748) drew weights where qwen-asr is absent
        cfg.dtype = dtype
        cfg.save_pretrained(out)
        make_processor(make_tokenizer(aligner)).save_pretrained(out)
        if aligner:
            mark_aligner(out)
        return out
    torch.manual_seed(seed)
    big = not size.startswith("tiny")
    with torch.device("meta") if big else contextlib.nullcontext():
        model = Qwen3ASRForConditionalGeneration(cfg)
    if big:
        model = model.to_empty(device="cpu")
    model.eval()
    scale_weights(model, seed, head_gain if head_gain is not None else (16.0 if aligner else 4.0), aligner)
    if aligner and not big:
        center_aligner_head(model, make_processor(make_tokenizer(True)), seed)
    if dtype != "float32":  # published checkpoints are bfloat16
        model = model.to(getattr(torch, dtype))
        model.config.dtype = dtype
    if layout == "original":
        model.save_pretrained(out, max_shard_size=shard_size, safe_serialization=True)
    elif layout == "hf":
        _save_hf_layout(model, cfg, out, shard_size)
    else:
        raise ValueError(f"unknown layout {layout}")
    del model
    make_processor(make_tokenizer(aligner)).save_pretrained(out)
    if aligner:
        mark_aligner(out)
    return out


SEGMENT_MS = 80             # an aligner's timestamp_segment_time, as published
CLASSIFY_NUM = 2250         # 180 s (the aligner's longest input) in classes of 80 ms


def aligner_config(asr_config, tok):
    """The demo ASR model's config as a Qwen3-ForcedAligner's (the published aligner's keys)."""
    from qwen_asr.core.transformers_backend import Qwen3ASRConfig

    d = asr_config.to_dict()
    thinker = d["thinker_config"]
    ts = tok.convert_tokens_to_ids("<timestamp>")
    thinker.update(model_type="qwen3_forced_aligner", classify_num=CLASSIFY_NUM, timestamp_token_id=ts,
                   timestamp_segment_time=SEGMENT_MS, audio_end_token_id=tok.convert_tokens_to_ids("<|audio_end|>"),
                   tie_word_embeddings=False)
    thinker["text_config"]["tie_word_embeddings"] = False
    cfg = Qwen3ASRConfig(thinker_config=thinker, support_languages=d.get("support_languages"),
                         timestamp_token_id=ts, timestamp_segment_time=SEGMENT_MS)
    cfg.architectures = ["Qwen3ASRForConditionalGeneration"]
    cfg.tie_word_embeddings = False
    return cfg


def mark_aligner(out: Path) -> None:
    """config.json's thinker model_type as published: transformers' to_dict writes the class's own
    ("qwen3_asr_thinker"), which would load a vocabulary head."""
    p = Path(out) / "config.json"
    cfg = json.loads(p.read_text())
    cfg["thinker_config"]["model_type"] = "qwen3_forced_aligner"
    p.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def _save_hf_layout(model, cfg, out: Path, shard_size: str):
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file

    sd = {}
    for k, v in model.state_dict().items():
        sd[hf_layout_name(k)] = v
    if cfg.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    split = split_torch_state_dict_into_shards(sd, max_shard_size=shard_size)
    for fname, keys in split.filename_to_tensors.items():
        save_file({k: sd[k].contiguous() for k in keys}, str(out / fname), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": {}, "weight_map": split.tensor_to_filename}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
    cfg.save_pretrained(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", choices=sorted(SIZES), default="tiny")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mha", action="store_true", help="as many kv heads as query heads")
    tie = ap.add_mutually_exclusive_group()
    tie.add_argument("--tied", dest="tied", action="store_true", default=None)
    tie.add_argument("--untied", dest="tied", action="store_false")
    ap.add_argument("--layout", choices=["original", "hf"], default="original")
    ap.add_argument("--shard-size", default="2GB")
    ap.add_argument("--text-layers", type=int)
    ap.add_argument("--audio-layers", type=int)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: float32 tiny, bfloat16 real sizes")
    ap.add_argument("--skeleton", action="store_true",
                    help="config, tokenizer and processor only, no weights (weights drawn elsewhere, e.g. with draw_weight)")
    ap.add_argument("--aligner", action="store_true", help="a Qwen3-ForcedAligner checkpoint (5000-class head)")
    ap.add_argument("--head-gain", type=float, help="output head scale (default 4, aligner 16)")
    ap.add_argument("--classify-num", type=int, default=CLASSIFY_NUM,
                    help="aligner classes (published: 5000 = 400 s at 80 ms; fewer keep random times short)")
    a = ap.parse_args(argv)
    write_checkpoint(a.out, a.size, a.seed, a.mha, a.tied, a.layout, a.shard_size, a.text_layers, a.audio_layers,
                     a.dtype, a.skeleton, a.aligner, a.head_gain, a.classify_num)
    print(a.out)


if __name__ == "__main__":
    sys.exit(main())
