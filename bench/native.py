"""llama.cpp's own q8_0 products vs asrgguf's native backend, decoder alone, same GGUF, same process.

Loads alternate between the two (llama.cpp first), several rounds, so that a slow spell of the shared
machine hits both; prints each run and the medians and ratios. Random embeddings for the prefill
(cost does not depend on values), then greedy decode steps.

    python bench/native.py /work/bench/Qwen3-ASR-0.6B/Qwen3-ASR-0.6B-q8_0.gguf --rounds 3

Figures: docs/native.md (decoder alone).
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from asrgguf import native
from asrgguf.decoder import Decoder, DecoderOptions


def cpu_line() -> str:
    model, flags = "?", set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and model == "?":
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    want = ["avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16"]
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(f for f in want if f in flags)}"


def run_once(path: str, use_native: bool, positions: int, steps: int, threads: int, n_batch: int) -> dict:
    t0 = time.perf_counter()
    d = Decoder(path, DecoderOptions(n_ctx=positions + steps + 8, n_threads=threads, n_batch=n_batch,
                                     native=use_native))
    load = time.perf_counter() - t0
    try:
        if use_native != d.native_info["used"]:
            raise SystemExit(f"native backend {'not ' if use_native else ''}used: {d.native_info}")
        emb = (np.random.default_rng(0).standard_normal((positions, d.n_embd)) * 0.02).astype(np.float32)
        s0, t0 = native.stats(), time.perf_counter()
        d.eval_embeddings(emb, 0, logits_last=True)
        prefill = time.perf_counter() - t0
        s1, t0 = native.stats(), time.perf_counter()
        for i in range(steps):
            d.step([int(np.argmax(d.logits()))], [positions + i], [0])
        decode = time.perf_counter() - t0
        s2 = native.stats()
        info = d.native_info
    finally:
        d.close()
    return {"load": load, "prefill": prefill, "decode_tok_s": steps / decode, "ms_token": 1000 * decode / steps,
            "prefill_in_native": s1["seconds"] - s0["seconds"],
            "ms_token_in_native": 1000 * (s2["seconds"] - s1["seconds"]) / steps,
            "splits_token": (s2["splits"] - s1["splits"]) / steps, "native_info": info}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("--positions", type=int, default=795, help="prefill length (60 s of audio + prompt: 795)")
    ap.add_argument("--steps", type=int, default=100, help="decode steps")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-batch", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--probe", action="store_true", help="also measure the streaming read bandwidth")
    a = ap.parse_args()
    res: dict = {False: [], True: []}
    print(f"CPU: {cpu_line()}")
    print("| products | load (s) | prefill (s) | of it in native (s) | decode tok/s | ms/token | of it in native (ms) |\n"
          "|---|---:|---:|---:|---:|---:|---:|")
    for _ in range(a.rounds):
        for use in (False, True):
            r = run_once(a.gguf, use, a.positions, a.steps, a.threads, a.n_batch)
            res[use].append(r)
            name = f"native ({native.isa()})" if use else "llama.cpp"
            nat = (f"{r['prefill_in_native']:.3f}", f"{r['ms_token_in_native']:.2f}") if use else ("", "")
            print(f"| {name} | {r['load']:.2f} | {r['prefill']:.3f} | {nat[0]} | {r['decode_tok_s']:.2f} | "
                  f"{r['ms_token']:.2f} | {nat[1]} |", flush=True)
    med = {u: {k: statistics.median(r[k] for r in res[u]) for k in res[u][0] if k != "native_info"} for u in res}
    print(f"\nmedians of {a.rounds} rounds ({a.positions} positions, {a.steps} steps, {a.threads} threads, "
          f"n_batch {a.n_batch}):")
    for u in (False, True):
        m = med[u]
        print(f"  {'native' if u else 'llama.cpp'}: prefill {m['prefill']:.3f} s, decode {m['decode_tok_s']:.2f} tok/s "
              f"({m['ms_token']:.2f} ms/token), load {m['load']:.2f} s")
    print(f"  native / llama.cpp: prefill speed x{med[False]['prefill'] / med[True]['prefill']:.2f}, "
          f"decode speed x{med[True]['decode_tok_s'] / med[False]['decode_tok_s']:.2f}")
    info = res[True][0]["native_info"]
    wbytes = info["weight_mib"] * 2**20
    m = med[True]
    print(f"  native products: {info['weights']} q8_0 weights, {info['weight_mib']} MiB; decode {m['ms_token_in_native']:.2f} "
          f"ms/token inside the backend (the products, the ops between them and the decode attention; the "
          f"weights alone are {wbytes / m['ms_token_in_native'] / 1e6:.1f} GB/s of that time); "
          f"{m['splits_token']:.0f} backend splits/token; prefill {m['prefill_in_native']:.3f} s inside the backend")
    if a.probe:
        p = native.probe_machine(a.threads)
        print("  machine: " + ", ".join(f"{k} {v:.1f}" for k, v in p.items()))


if __name__ == "__main__":
    main()
