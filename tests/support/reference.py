"""The official qwen-asr implementation as the reference for every number asrgguf computes.

The official transformers backend applies its encoder block mask only under flash_attention_2;
with sdpa (CPU) every frame attends over the whole clip. Training, the vLLM backend, llama.cpp and
asrgguf run windowed, so `windowed()` passes the official `_prepare_attention_mask` block mask to
every encoder layer, as the flash-attention path does (clips of 8 s or less are the same either way).
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np
import torch


@contextlib.contextmanager
def windowed():
    from qwen_asr.core.transformers_backend import modeling_qwen3_asr as m

    orig = m.Qwen3ASRAudioEncoderLayer.forward

    def forward(self, hidden_states, cu_seqlens, attention_mask=None, **kw):
        if attention_mask is None:
            fake = type("E", (), {"config": self.self_attn.config})()
            attention_mask = m.Qwen3ASRAudioEncoder._prepare_attention_mask(fake, hidden_states, cu_seqlens)
        return orig(self, hidden_states, cu_seqlens, attention_mask=attention_mask, **kw)

    m.Qwen3ASRAudioEncoderLayer.forward = forward
    try:
        yield
    finally:
        m.Qwen3ASRAudioEncoderLayer.forward = orig


@functools.lru_cache(maxsize=4)
def official_model(path: str, max_new_tokens: int = 64):
    from qwen_asr import Qwen3ASRModel

    return Qwen3ASRModel.from_pretrained(path, dtype=torch.float32, device_map="cpu", max_new_tokens=max_new_tokens)


def official_wav(path: str) -> np.ndarray:
    from qwen_asr.inference.utils import normalize_audio_input

    return normalize_audio_input(path)


def official_inputs(model, wav: np.ndarray, context: str = "", language: str | None = None):
    prompt = model._build_text_prompt(context=context, force_language=language)
    return model.processor(text=[prompt], audio=[wav], return_tensors="pt", padding=True)


def official_features(model, wav: np.ndarray) -> np.ndarray:
    inp = official_inputs(model, wav)
    n = int(inp["feature_attention_mask"][0].sum())
    return inp["input_features"][0, :, :n].numpy()


def official_encoder(model, wav: np.ndarray) -> np.ndarray:
    inp = official_inputs(model, wav)
    thinker = model.model.thinker
    with windowed(), torch.no_grad():
        out = thinker.get_audio_features(inp["input_features"], feature_attention_mask=inp["feature_attention_mask"])
    return out.numpy()


def end_ids(model) -> list[int]:
    """<|im_end|> and <|endoftext|> in the model's own vocabulary. The official generate() defaults to
    [151645, 151643], their Qwen2 ids; a checkpoint with another vocabulary (the demo model) needs these."""
    tok = model.processor.tokenizer
    return [tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")]


def official_tokens(model, wav: np.ndarray, context: str = "", language: str | None = None,
                    max_new_tokens: int = 64) -> list[int]:
    """Greedy generated ids (end-of-turn excluded), windowed encoder, float32."""
    inp = official_inputs(model, wav, context, language)
    stop = end_ids(model)
    with windowed(), torch.no_grad():
        out = model.model.generate(**inp, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=stop)
    ids = out.sequences[0, inp["input_ids"].shape[1]:].tolist()
    while ids and ids[-1] in stop:
        ids.pop()
    return ids


def official_prompt_ids(model, wav: np.ndarray, context: str = "", language: str | None = None) -> list[int]:
    return official_inputs(model, wav, context, language)["input_ids"][0].tolist()


def official_text_logits(model, ids: list[int]) -> np.ndarray:
    """The thinker's logits for a pure token prompt (no audio)."""
    thinker = model.model.thinker
    with torch.no_grad():
        out = thinker(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long))
    return out.logits[0].numpy()


# --- Qwen3ForcedAligner
def official_classes(model, wav, text, language):
    """The official forward pass: units, and the head's scores at every <timestamp> position."""
    units, prompt = model.aligner_processor.encode_timestamp(text, language)
    inp = model.processor(text=[prompt], audio=[wav], return_tensors="pt", padding=True)
    with torch.inference_mode(), windowed():
        logits = model.model.thinker(**inp).logits[0]
    return units, logits[inp["input_ids"][0] == model.timestamp_token_id].numpy()


def official_words(model, wav, text, language):
    """Qwen3ForcedAligner.align on 16 kHz samples: [(unit, start s, end s)]."""
    with windowed():
        return [(it.text, it.start_time, it.end_time) for it in model.align((wav, 16000), text, language)[0]]
