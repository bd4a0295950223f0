"""llama.cpp's own q8_0 products vs asrgguf's native backend, decoder alone, same GGUF, same process.

Loads alternate between the two (llama.cpp first), several rounds, so that a slow spell of the shared
machine hits both; prints each run and the medians and ratios. Random embeddings for the prefill
(cost does not depend on values), then greedy decode steps.

    python tools/bench_native.py /work/bench/Qwen3-ASR-0.6B/Qwen3-ASR-0.6B-q8_0.gguf --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from asrgguf import native
from asrgguf.decoder import Decoder, DecoderOptions


def run_once(path: str, use_native: bool, positions: int, steps: int, threads: int, n_batch: int) -> dict:
    t0 = time.perf_counter()
    d = Decoder(path, DecoderOptions(n_ctx=positions + steps + 8, n_threads=threads, n_batch=n_batch,
                                     native=use_native))
    load = time.perf_counter() - t0
    try:
        if use_native != d.native_info["used"]:
            raise SystemExit(f"native backend {'not ' if use_native else ''}used: {d.native_info}")
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
    return {"load": load, "prefill": prefill, "decode_tok_s": steps / decode, "ms_token": 1000 * decode / steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("--positions", type=int, default=795, help="prefill length (60 s of audio + prompt: 795)")
    ap.add_argument("--steps", type=int, default=100, help="decode steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    res: dict = {False: [], True: []}
    print("| products | load (s) | prefill (s) | decode tok/s | ms/token |\n|---|---:|---:|---:|---:|")
    for _ in range(a.rounds):
        for use in (False, True):
            r = run_once(a.gguf, use, a.positions, a.steps, a.threads, a.n_batch)
            res[use].append(r)
            name = f"native ({native.isa()})" if use else "llama.cpp"
            print(f"| {name} | {r['load']:.2f} | {r['prefill']:.3f} | {r['decode_tok_s']:.2f} | {r['ms_token']:.2f} |",
                  flush=True)
    med = {u: {k: statistics.median(r[k] for r in res[u]) for k in res[u][0]} for u in res}
    print(f"\nmedians of {a.rounds} rounds ({a.positions} positions, {a.steps} steps, {a.threads} threads, "
          f"n_batch {a.n_batch}):")
    for u in (False, True):
        m = med[u]
        print(f"  {'native' if u else 'llama.cpp'}: prefill {m['prefill']:.3f} s, decode {m['decode_tok_s']:.2f} tok/s "
              f"({m['ms_token']:.2f} ms/token), load {m['load']:.2f} s")
    print(f"  native / llama.cpp: prefill speed x{med[False]['prefill'] / med[True]['prefill']:.2f}, "
          f"decode speed x{med[True]['decode_tok_s'] / med[False]['decode_tok_s']:.2f}")


if __name__ == "__main__":
    main()
