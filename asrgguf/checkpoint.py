"""Read a Hugging Face Qwen3-ASR checkpoint directory: configs, tokenizer files and tensors.

The one weight loader for safetensors. Tensors are read lazily (and in row blocks) so that
converting a 1.7B checkpoint never holds more than one block in memory.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import AsrggufError
from .gguf_names import split_checkpoint_name



@dataclass
class TokenizerFiles:
    tokens: list[str]
    types: list[int]          # gguf.TokenType values
    merges: list[str]
    eos_id: int
    pad_id: int | None
    chat_template: str | None


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AsrggufError(f"{path.parent}: not a Qwen3-ASR checkpoint ({path.name} is missing)") from None
    except (OSError, ValueError) as e:
        raise AsrggufError(f"{path}: cannot read {what}: {e}") from None


class Checkpoint:
    """A Qwen3-ASR checkpoint directory as published (original or transformers-native layout)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise AsrggufError(f"{self.path}: no such checkpoint directory")
        cfg = _read_json(self.path / "config.json", "config.json")
        thinker = cfg.get("thinker_config", cfg)
        model_type = cfg.get("model_type", "")
        if "qwen3_asr" not in str(model_type) or "audio_config" not in thinker or "text_config" not in thinker:
            raise AsrggufError(f"{self.path}: not a Qwen3-ASR checkpoint (config.json model_type is "
                               f"{model_type!r}, expected 'qwen3_asr' with audio_config and text_config)")
        self.config = cfg
        self.audio_config = dict(thinker["audio_config"])
        self.text_config = dict(thinker["text_config"])
        tie = self.text_config.get("tie_word_embeddings", thinker.get("tie_word_embeddings",
                                                                      cfg.get("tie_word_embeddings", False)))
        self.tied = bool(tie)
        # Qwen3-ForcedAligner: the thinker config marks it and its head has classify_num rows
        self.aligner = "forced_aligner" in str(thinker.get("model_type", ""))
        self.classify_num = int(thinker.get("classify_num", 0) or 0) if self.aligner else 0
        if self.aligner:
            if self.classify_num < 1:
                raise AsrggufError(f"{self.path}: a forced-aligner config.json without classify_num")
            self.timestamp_token_id = int(cfg.get("timestamp_token_id", thinker.get("timestamp_token_id", 151705)))
            self.timestamp_segment_time = float(cfg.get("timestamp_segment_time",
                                                        thinker.get("timestamp_segment_time", 80)))
        self.name = self.path.resolve().name
        self._files = self._find_shards()
        self._index: dict[tuple[str, str], tuple[Path, str]] = {}
        from safetensors import safe_open

        for f in self._files:
            try:
                with safe_open(str(f), framework="pt") as h:
                    for key in h.keys():
                        split = split_checkpoint_name(key)
                        if split is not None:
                            self._index[split] = (f, key)
            except Exception as e:  # safetensors raises its own error types
                raise AsrggufError(f"{f}: cannot read safetensors file: {e}") from None
        if ("text", "lm_head.weight") in self._index and self.tied and not self.aligner:
            # a tied checkpoint that still stores the head: llama.cpp uses token_embd then
            del self._index[("text", "lm_head.weight")]
        self.tied = ("text", "lm_head.weight") not in self._index
        self._check_shapes()

    # --- files
    def _find_shards(self) -> list[Path]:
        index = self.path / "model.safetensors.index.json"
        if index.exists():
            weight_map = _read_json(index, "the shard index").get("weight_map", {})
            files = sorted({self.path / v for v in weight_map.values()})
            missing = [f.name for f in files if not f.exists()]
            if missing:
                raise AsrggufError(f"{self.path}: missing shard {missing[0]} (listed in model.safetensors.index.json)")
            return files
        files = sorted(self.path.glob("*.safetensors"))
        if not files:
            raise AsrggufError(f"{self.path}: no safetensors weights found")
        return files

    # --- shapes
    def expected_shapes(self) -> dict[tuple[str, str], tuple[int, ...]]:
        t, a = self.text_config, self.audio_config
        H, F, V = t["hidden_size"], t["intermediate_size"], t["vocab_size"]
        nh, nkv = t["num_attention_heads"], t.get("num_key_value_heads") or t["num_attention_heads"]
        hd = t.get("head_dim") or H // nh
        shapes: dict[tuple[str, str], tuple[int, ...]] = {
            ("text", "embed_tokens.weight"): (V, H), ("text", "norm.weight"): (H,)}
        if self.aligner:
            shapes[("text", "lm_head.weight")] = (self.classify_num, H)
        elif not self.tied:
            shapes[("text", "lm_head.weight")] = (V, H)
        for i in range(t["num_hidden_layers"]):
            p = f"layers.{i}."
            shapes.update({("text", p + k): s for k, s in {
                "input_layernorm.weight": (H,), "post_attention_layernorm.weight": (H,),
                "self_attn.q_proj.weight": (nh * hd, H), "self_attn.k_proj.weight": (nkv * hd, H),
                "self_attn.v_proj.weight": (nkv * hd, H), "self_attn.o_proj.weight": (H, nh * hd),
                "self_attn.q_norm.weight": (hd,), "self_attn.k_norm.weight": (hd,),
                "mlp.gate_proj.weight": (F, H), "mlp.up_proj.weight": (F, H), "mlp.down_proj.weight": (H, F),
            }.items()})
        d, C, mel = a["d_model"], a["downsample_hidden_size"], a["num_mel_bins"]
        ffn, out = a["encoder_ffn_dim"], a["output_dim"]
        f = (((mel + 1) // 2 + 1) // 2 + 1) // 2
        audio = {"conv2d1.weight": (C, 1, 3, 3), "conv2d1.bias": (C,), "conv2d2.weight": (C, C, 3, 3),
                 "conv2d2.bias": (C,), "conv2d3.weight": (C, C, 3, 3), "conv2d3.bias": (C,),
                 "conv_out.weight": (d, C * f), "ln_post.weight": (d,), "ln_post.bias": (d,),
                 "proj1.weight": (d, d), "proj1.bias": (d,), "proj2.weight": (out, d), "proj2.bias": (out,)}
        for i in range(a["encoder_layers"]):
            p = f"layers.{i}."
            for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj"):
                audio[p + m + ".weight"], audio[p + m + ".bias"] = (d, d), (d,)
            for m in ("self_attn_layer_norm", "final_layer_norm"):
                audio[p + m + ".weight"], audio[p + m + ".bias"] = (d,), (d,)
            audio[p + "fc1.weight"], audio[p + "fc1.bias"] = (ffn, d), (ffn,)
            audio[p + "fc2.weight"], audio[p + "fc2.bias"] = (d, ffn), (d,)
        shapes.update({("audio", k): s for k, s in audio.items()})
        return shapes

    def _check_shapes(self):
        from safetensors import safe_open

        expected = self._shapes = self.expected_shapes()
        for key, shape in expected.items():
            if key not in self._index:
                raise AsrggufError(f"{self.path}: tensor for {key[0]} '{key[1]}' is missing from the checkpoint")
        by_file: dict[Path, list[tuple[tuple[str, str], str]]] = {}
        for key in expected:
            f, name = self._index[key]
            by_file.setdefault(f, []).append((key, name))
        for f, items in by_file.items():
            with safe_open(str(f), framework="pt") as h:
                for key, name in items:
                    got = tuple(h.get_slice(name).get_shape())
                    if got != expected[key]:
                        raise AsrggufError(f"{self.path}: tensor '{name}' has shape {list(got)}, "
                                           f"expected {list(expected[key])} from config.json")
        self.tensor_keys = list(expected)

    def shape(self, kind: str, name: str) -> tuple[int, ...]:
        return self._shapes[(kind, name)]

    def read_rows(self, kind: str, name: str, block_rows: int | None = None):
        """Yield float32 numpy blocks of the tensor, split along its first axis."""
        from safetensors import safe_open

        f, key = self._index[(kind, name)]
        with safe_open(str(f), framework="pt") as h:
            sl = h.get_slice(key)
            shape = sl.get_shape()
            rows = shape[0]
            step = rows if block_rows is None else max(1, block_rows)
            for start in range(0, rows, step):
                t = sl[start:min(rows, start + step)]
                yield t.float().numpy()

    def read(self, kind: str, name: str) -> np.ndarray:
        return np.concatenate(list(self.read_rows(kind, name)), axis=0)

    # --- tokenizer
    def tokenizer_files(self) -> TokenizerFiles:
        import gguf

        vocab_path = self.path / "vocab.json"
        tok_json_path = self.path / "tokenizer.json"
        cfg = _read_json(self.path / "tokenizer_config.json", "tokenizer_config.json")
        merges: list[str]
        if vocab_path.exists():
            vocab = _read_json(vocab_path, "vocab.json")
            merges_path = self.path / "merges.txt"
            if not merges_path.exists():
                raise AsrggufError(f"{self.path}: merges.txt is missing")
            merges = [ln for ln in merges_path.read_text(encoding="utf-8").splitlines()
                      if ln and not ln.startswith("#version")]
        elif tok_json_path.exists():
            model = _read_json(tok_json_path, "tokenizer.json")["model"]
            vocab = model["vocab"]
            merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        else:
            raise AsrggufError(f"{self.path}: no tokenizer (vocab.json + merges.txt or tokenizer.json)")
        V = self.text_config["vocab_size"]
        tokens: list[str | None] = [None] * V
        types = [int(gguf.TokenType.UNUSED)] * V
        for tok, i in vocab.items():
            if i < V:
                tokens[i], types[i] = tok, int(gguf.TokenType.NORMAL)
        for sid, info in cfg.get("added_tokens_decoder", {}).items():
            i, content = int(sid), info["content"]
            if i >= V:
                continue
            looks_special = content.startswith("<|") and content.endswith("|>")
            tokens[i] = content
            types[i] = int(gguf.TokenType.CONTROL if info.get("special") or looks_special
                           else gguf.TokenType.USER_DEFINED)
        for i, t in enumerate(tokens):
            if t is None:
                tokens[i] = f"[PAD{i}]"
        ids = {t: i for i, t in enumerate(tokens)}
        if "<|im_end|>" not in ids:
            raise AsrggufError(f"{self.path}: tokenizer has no <|im_end|> token")
        pad = cfg.get("pad_token")
        pad = pad.get("content") if isinstance(pad, dict) else pad
        template = None
        for fname in ("chat_template.json", "chat_template.jinja"):
            p = self.path / fname
            if p.exists():
                text = p.read_text(encoding="utf-8")
                template = json.loads(text)["chat_template"] if fname.endswith(".json") else text
                break
        template = template or cfg.get("chat_template")
        return TokenizerFiles(tokens=tokens, types=types, merges=merges, eos_id=ids["<|im_end|>"],
                              pad_id=ids.get(pad) if pad else None, chat_template=template)

    def preprocessor(self) -> dict:
        p = self.path / "preprocessor_config.json"
        return _read_json(p, "preprocessor_config.json") if p.exists() else {}
