"""Run in a subprocess by tests/test_native.py (the native backend registers once per process):
load a decoder GGUF, prefill random embeddings, decode greedily, save every step's logits.

    python tests/support/native_probe.py DECODER.gguf OUT.npy [--native on|off|default] [--positions N] [--steps N]
Prints one json line: {"native": decoder.native_info, "ids": [...], "status": asrgguf.native.status()}.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from asrgguf import native
from asrgguf.decoder import Decoder, DecoderOptions


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--native", choices=["on", "off", "default"], default="default")
    ap.add_argument("--positions", type=int, default=40)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    opt = {"on": True, "off": False, "default": None}[a.native]
    d = Decoder(a.gguf, DecoderOptions(n_ctx=a.positions + a.steps + 8, n_threads=a.threads, native=opt))
    emb = (np.random.default_rng(0).standard_normal((a.positions, d.n_embd))).astype(np.float32)
    pos = d.eval_embeddings(emb, 0, logits_last=True)
    rows, ids = [d.logits().copy()], []
    for _ in range(a.steps):
        ids.append(int(np.argmax(rows[-1])))
        pos = d.eval_tokens([ids[-1]], pos, logits_last=True)
        rows.append(d.logits().copy())
    np.save(a.out, np.stack(rows))
    print(json.dumps({"native": d.native_info, "ids": ids, "status": native.status(), "stats": native.stats()}))
    d.close()


if __name__ == "__main__":
    main()
