#!/usr/bin/env python3
"""Run the official qwen-asr package (transformers backend, unmodified) on one audio file; print JSON.

    python bench/official_run.py AUDIO --model CHECKPOINT_DIR [--dtype float32|bfloat16|float16]
                                 [--device cpu|cuda|mps] [--bench-tokens N] [--threads T]

The model is loaded and called as a user does it: `Qwen3ASRModel.from_pretrained(dir, dtype=...,
device_map=...)` then `.transcribe(path, language=...)`. Nothing in the computation is changed;
two things are attached from outside:
  - --bench-tokens N: `model.generate` is wrapped to pass min_new_tokens=N and max_new_tokens=N,
    so exactly N tokens are generated (the end-of-turn ids are masked until N, then the length
    limit stops it). Cost per token does not depend on which token it is.
  - timings: forward hooks on the audio tower time the encoder; a no-op logits processor records
    when the first token's logits exist (encoder + prefill done) and when the last one's do.

Output: {"text", "language", "raw", "token_ids", "timings": {"load", "transcribe", "processor",
"encoder", "prefill", "decode", "decode_tokens_per_s", "generated_tokens"}, "n_prompt_positions",
"model"}. "prefill" excludes the encoder; "processor" is everything in transcribe() before
generate() (audio decode and resample, log-mel features, prompt), "decode" the time from the
first token's logits to the last token's, over generated_tokens - 1 tokens.

Figures: docs/benchmarks.md and docs/native.md through bench/compare.py (the official-* contenders).
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _sync(device: str):
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    elif device == "mps":
        torch.mps.synchronize()


def run(audio: str, model_dir: str, dtype: str = "float32", device: str = "cpu", bench_tokens: int | None = None,
        max_new_tokens: int = 512, language: str | None = None, context: str = "",
        threads: int | None = None) -> dict:
    import torch
    from qwen_asr import Qwen3ASRModel
    from transformers import LogitsProcessor, LogitsProcessorList

    if threads:
        torch.set_num_threads(threads)
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]

    t0 = time.perf_counter()
    asr = Qwen3ASRModel.from_pretrained(model_dir, dtype=torch_dtype, device_map=device,
                                        max_new_tokens=bench_tokens or max_new_tokens)
    _sync(device)
    t_load = time.perf_counter() - t0

    rec = {"enc": 0.0, "enc_start": None, "gen_start": None, "first": None, "last": None, "n_calls": 0,
           "sequences": None, "n_input": None}

    tower = asr.model.thinker.audio_tower

    def pre_hook(module, args, kwargs=None):
        _sync(device)
        rec["enc_start"] = time.perf_counter()

    def post_hook(module, args, output):
        _sync(device)
        rec["enc"] += time.perf_counter() - rec["enc_start"]

    h1 = tower.register_forward_pre_hook(pre_hook)
    h2 = tower.register_forward_hook(post_hook)

    class _Clock(LogitsProcessor):
        def __call__(self, input_ids, scores):
            _sync(device)
            now = time.perf_counter()
            if rec["first"] is None:
                rec["first"] = now
            rec["last"] = now
            rec["n_calls"] += 1
            return scores

    inner_generate = asr.model.generate

    def generate(*args, **kwargs):
        if bench_tokens:
            kwargs["max_new_tokens"] = bench_tokens
            kwargs["min_new_tokens"] = bench_tokens
        lp = kwargs.pop("logits_processor", None) or LogitsProcessorList()
        lp.append(_Clock())
        kwargs["logits_processor"] = lp
        _sync(device)
        rec["gen_start"] = time.perf_counter()
        out = inner_generate(*args, **kwargs)
        _sync(device)
        rec["gen_end"] = time.perf_counter()
        rec["sequences"] = out.sequences
        ids = kwargs.get("input_ids", args[0] if args else None)
        rec["n_input"] = int(ids.shape[1]) if ids is not None else None
        return out

    asr.model.generate = generate  # instance attribute: only this object's generate is wrapped

    t1 = time.perf_counter()
    res = asr.transcribe(audio, context=context, language=language)
    t_tr = time.perf_counter() - t1
    h1.remove()
    h2.remove()

    r = res[0]
    seq = rec["sequences"]
    new_ids = seq[0, rec["n_input"]:].tolist() if seq is not None and rec["n_input"] is not None else []
    raw = asr.processor.batch_decode([new_ids], skip_special_tokens=True, clean_up_tokenization_spaces=False)[0] \
        if new_ids else ""
    # the last logits-processor call is for the last token; the first token comes from the prefill
    ttft = (rec["first"] - rec["gen_start"]) if rec["first"] else None
    decode = (rec["gen_end"] - rec["first"]) if rec["first"] else None
    n_gen = len(new_ids)
    timings = {
        "load": t_load,
        "transcribe": t_tr,
        "processor": (rec["gen_start"] - t1) if rec["gen_start"] else None,
        "generate": (rec["gen_end"] - rec["gen_start"]) if rec["gen_start"] else None,
        "encoder": rec["enc"],
        "prefill": (ttft - rec["enc"]) if ttft is not None else None,
        "decode": decode,
        "decode_tokens_per_s": ((n_gen - 1) / decode) if decode and n_gen > 1 else 0.0,
        "generated_tokens": n_gen,
    }
    return {"text": r.text, "language": r.language, "raw": raw, "token_ids": new_ids, "timings": timings,
            "n_prompt_positions": rec["n_input"],
            "model": {"dir": str(model_dir), "dtype": dtype, "device": device,
                      "threads": torch.get_num_threads(),
                      "attn_implementation": getattr(asr.model.config, "_attn_implementation", None)}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("audio")
    ap.add_argument("--model", required=True, help="Qwen3-ASR checkpoint directory (or hub id)")
    ap.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:0, mps")
    ap.add_argument("--bench-tokens", type=int, default=None)
    ap.add_argument("--max-new-tokens", type=int, default=512, help="the official default")
    ap.add_argument("--language", default=None)
    ap.add_argument("--context", default="")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    a = ap.parse_args(argv)
    out = run(a.audio, a.model, a.dtype, a.device, a.bench_tokens, a.max_new_tokens, a.language, a.context,
              a.threads)
    out["audio"] = a.audio
    print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
