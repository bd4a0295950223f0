"""In-process speed of the llama.cpp decoder alone: prefill of N embedding positions, then greedy decode steps.

Random embeddings (cost does not depend on values), one process, loads alternating between the settings
compared, so that a slow spell of the machine hits both. For llama.cpp knobs measured in docs/benchmarks.md.

    python bench/decoder.py Qwen3-ASR-0.6B-q8_0.gguf --repack on,off --rounds 2
    python bench/decoder.py Qwen3-ASR-0.6B-q8_0.gguf --n-batch 128,256,512
    python bench/decoder.py Qwen3-ASR-0.6B-q8_0.gguf --kv f16,f32 --steps 200
    python bench/decoder.py Qwen3-ASR-0.6B-q8_0.gguf --flash off,on --positions 3915 --steps 50

Figures: docs/benchmarks.md ("What was changed, predicted and measured": repack, KV type, flash attention).
"""
from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from asrgguf.decoder import Decoder, DecoderOptions


def run_once(path: str, repack: bool, n_batch: int, kv: str, flash: bool, positions: int, steps: int,
             threads: int) -> dict:
    t0 = time.perf_counter()
    d = Decoder(path, DecoderOptions(n_ctx=positions + steps + 8, n_threads=threads, n_batch=n_batch,
                                     repack=repack, kv_f32=kv == "f32", flash_attn=flash))
    load = time.perf_counter() - t0
    try:
        emb = (np.random.default_rng(0).standard_normal((positions, d.n_embd)) * 0.02).astype(np.float32)
        t0 = time.perf_counter()
        d.eval_embeddings(emb, 0, logits_last=True)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(steps):
            d.step([int(np.argmax(d.logits()))], [positions + i], [0])
        decode = time.perf_counter() - t0
    finally:
        d.close()
    return {"load": load, "prefill": prefill, "decode_tok_s": steps / decode if steps else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("--repack", default="on", help="comma list of on/off (llama.cpp's repacked weights)")
    ap.add_argument("--n-batch", default="256", help="comma list of prefill batch sizes")
    ap.add_argument("--kv", default="f16", help="comma list of KV cache types: f16, f32")
    ap.add_argument("--flash", default="off", help="comma list of on/off (llama.cpp's flash attention)")
    ap.add_argument("--positions", type=int, default=795, help="prefill length (60 s of audio + prompt: 795)")
    ap.add_argument("--steps", type=int, default=50, help="decode steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="loads per setting, alternating")
    a = ap.parse_args()
    repacks = [{"on": True, "off": False}[v] for v in a.repack.split(",")]
    batches = [int(v) for v in a.n_batch.split(",")]
    kvs = a.kv.split(",")
    flashes = [{"on": True, "off": False}[v] for v in a.flash.split(",")]
    print("| repack | n_batch | KV | flash attention | load (s) | prefill (s) | decode tok/s |\n"
          "|---|---:|---|---|---:|---:|---:|")
    for _ in range(a.rounds):
        for rp, nb, kv, fa in itertools.product(repacks, batches, kvs, flashes):
            if kv == "f32" and fa:  # an f32 KV cache is the exact mode, which keeps flash attention off
                continue
            r = run_once(a.gguf, rp, nb, kv, fa, a.positions, a.steps, a.threads)
            print(f"| {'on' if rp else 'off'} | {nb} | {kv} | {'on' if fa else 'off'} | {r['load']:.2f} | "
                  f"{r['prefill']:.2f} | {r['decode_tok_s']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
