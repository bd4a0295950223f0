"""Run by tests/test_native.py: in ONE process, a decoder with the native backend, then the same GGUF
with native=False (the backend stays registered): saves both runs' logits.

    python tests/support/native_probe2.py DECODER.gguf OUT_ON.npy OUT_OFF.npy
"""
from __future__ import annotations

import json
import sys

import numpy as np

from asrgguf.decoder import Decoder, DecoderOptions


def run(path: str, native: bool | None, out: str) -> dict:
    d = Decoder(path, DecoderOptions(n_ctx=64, n_threads=2, native=native))
    emb = (np.random.default_rng(0).standard_normal((40, d.n_embd))).astype(np.float32)
    pos = d.eval_embeddings(emb, 0, logits_last=True)
    rows = [d.logits().copy()]
    for _ in range(6):
        pos = d.eval_tokens([int(np.argmax(rows[-1]))], pos, logits_last=True)
        rows.append(d.logits().copy())
    np.save(out, np.stack(rows))
    info = d.native_info
    d.close()
    return info


if __name__ == "__main__":
    print(json.dumps([run(sys.argv[1], None, sys.argv[2]), run(sys.argv[1], False, sys.argv[3])]))
