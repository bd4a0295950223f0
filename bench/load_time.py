#!/usr/bin/env python3
"""Decoder load time and peak RSS with the native backend's repack cache, without it, and without the backend:
each a fresh process (`Decoder(path)` only), the three alternating, medians.

    flock /tmp/asrgguf-bench.lock python bench/load_time.py DECODER-q8_0.gguf [--runs 3]

The cache directory is a temporary one (ASRGGUF_CACHE), filled by one unmeasured load first. Prints a Markdown
table with the CPU line (bench/proc_stats.py).

Figures: docs/native.md ("The repack cache").
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from asrgguf.decoder import Decoder, DecoderOptions
import llama_cpp.llama_cpp
t1 = time.perf_counter()
d = Decoder(sys.argv[1], DecoderOptions(n_threads=int(sys.argv[2])))
t2 = time.perf_counter()
print(json.dumps({"load_s": t2 - t1, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "native": d.native_info}))
"""

CONTENDERS = {"cache": {}, "no-cache": {"ASRGGUF_NATIVE_NO_CACHE": "1"}, "no-native": {"ASRGGUF_NO_NATIVE": "1"}}


def one(gguf: str, threads: int, env: dict) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("ASRGGUF_N")}
    e.update(env, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", CHILD, gguf, str(threads)], capture_output=True, text=True, env=e)
    if r.returncode:
        raise SystemExit(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    from proc_stats import cpu_line

    with tempfile.TemporaryDirectory() as cache:
        os.environ["ASRGGUF_CACHE"] = cache
        first = one(a.gguf, a.threads, {})
        res = {k: [] for k in CONTENDERS}
        for _ in range(a.runs):
            for k, env in CONTENDERS.items():
                res[k].append(one(a.gguf, a.threads, env))
    print(cpu_line())
    print(f"first load (writes the cache): {first['load_s']:.2f} s, cache {first['native'].get('cache')}\n")
    print("| decoder load | median (s) | runs (s) | peak RSS median (MB) | cache |")
    print("|---|---:|---|---:|---|")
    for k, rs in res.items():
        runs = " ".join(f"{r['load_s']:.2f}" for r in rs)
        print(f"| {k} | {statistics.median(r['load_s'] for r in rs):.2f} | {runs} | "
              f"{statistics.median(r['rss_mb'] for r in rs):.0f} | {rs[0]['native'].get('cache', '-')} |")


if __name__ == "__main__":
    main()
