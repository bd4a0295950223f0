#!/usr/bin/env python3
"""Parity of asrgguf with the official qwen-asr on random tiny checkpoints: the figures for docs/parity.md.

For each checkpoint (GQA untied, MHA tied) and clip (about 5 s and 20 s of espeak-ng speech) it
reports: log-mel and encoder relative error (f32), decoder logit relative error for a token prompt
(f32/f16/q8_0 decoders), and how many generated tokens equal the official greedy tokens
(f32/f16/q8_0 decoders, f32 encoder). The official model runs in float32 with its encoder block
mask applied to every layer (windowed, as in training).

    python bench/parity_report.py --workdir /tmp/parity --markdown /tmp/parity-table.md   # the table of docs/parity.md
    python bench/parity_report.py --workdir /tmp/parity --bf16-encoder   # beside it: a bfloat16 encoder's columns

Figures: docs/parity.md.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.speech_text import SENTENCES  # noqa: E402

PROMPT = ("<|im_start|>system\nYou transcribe meetings.<|im_end|>\n<|im_start|>user\nHello there, how are you "
          "today? 123<|im_end|>\n<|im_start|>assistant\nlanguage English<asr_text>")


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--markdown", type=Path)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--bf16-encoder", action="store_true",
                    help="also the encoder in bfloat16 (--dtype bfloat16): its error and token columns beside f32's")
    a = ap.parse_args(argv)

    from support.random_checkpoint import write_checkpoint
    from support.reference import (official_encoder, official_features, official_model, official_text_logits,
                           official_tokens, official_wav)

    from asrgguf import Transcriber
    from asrgguf.convert import quantize_checkpoint
    from asrgguf.decoder import Decoder, DecoderOptions
    from asrgguf.encoder import load_from_gguf
    from asrgguf.features import LogMel

    w = a.workdir
    w.mkdir(parents=True, exist_ok=True)
    clips = {}
    for name, text, speed in (("5 s", SENTENCES[0] + " " + SENTENCES[1][:30], 170), ("20 s", " ".join(SENTENCES), 165)):
        p = w / f"clip-{name.split()[0]}s.wav"
        subprocess.run(["espeak-ng", "-s", str(speed), "-w", str(p), text], check=True)
        clips[name] = p
    cks = {"GQA, untied head": dict(seed=0, mha=False, tied=False), "MHA, tied head": dict(seed=1, mha=True, tied=True)}
    bf = a.bf16_encoder
    lines = ["| checkpoint | clip | log-mel rel. err | encoder rel. err (f32) | decoder | logit rel. err | "
             "tokens equal to official (prefix) |" + (" encoder rel. err (bf16) | tokens, bf16 encoder |" if bf else ""),
             "|---|---|---:|---:|---|---:|---:|" + ("---:|---:|" if bf else "")]
    for ck_name, kw in cks.items():
        ck = w / ck_name.split(",")[0].lower()
        if not (ck / "config.json").exists():
            write_checkpoint(ck, "tiny", **kw)
        model = official_model(str(ck))
        pairs = {t: quantize_checkpoint(ck, t, w / "gguf" / ck.name, "f32" if t == "f32" else "f16", progress=False)
                 for t in ("f32", "f16", "q8_0")}
        ids = model.processor.tokenizer(PROMPT)["input_ids"]
        ref_logits = official_text_logits(model, ids)
        logit_err = {}
        for t, (dec_path, _) in pairs.items():
            d = Decoder(dec_path, DecoderOptions(n_ctx=256))
            d.eval_tokens(ids, 0, logits_all=True)
            logit_err[t] = rel(np.stack([d.logits(i).copy() for i in range(len(ids))]), ref_logits)
            d.close()
        enc = load_from_gguf(pairs["f32"][1])
        enc_bf = load_from_gguf(pairs["f32"][1], dtype=torch.bfloat16) if bf else None
        for clip_name, path in clips.items():
            wav = official_wav(str(path))
            feats = LogMel()(wav)
            mel_err = rel(feats.numpy(), official_features(model, wav))
            ref_enc = official_encoder(model, wav)
            enc_err = rel(enc(feats).numpy(), ref_enc)
            enc_err_bf = rel(enc_bf(feats).float().numpy(), ref_enc) if bf else None
            ref = official_tokens(model, wav, max_new_tokens=a.tokens)
            for t, (dec_path, mm) in pairs.items():
                agree = []
                for dtype in ("float32", "bfloat16") if bf else ("float32",):
                    with Transcriber.from_gguf(dec_path, pairs["f32"][1], max_new_tokens=a.tokens, device="cpu",
                                               dtype=dtype) as tr:
                        got = tr.transcribe_all(str(path), repetition_guard=False).token_ids
                    same = next((i for i, (x, y) in enumerate(zip(got, ref)) if x != y), min(len(got), len(ref)))
                    agree.append("identical" if got == ref else f"{same} of {len(ref)}")
                lines.append(f"| {ck_name} | {clip_name} | {mel_err:.1e} | {enc_err:.1e} | {t} | {logit_err[t]:.1e} | "
                             f"{agree[0]} |" + (f" {enc_err_bf:.1e} | {agree[1]} |" if bf else ""))
                print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if a.markdown:
        a.markdown.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
