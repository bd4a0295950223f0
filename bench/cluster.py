"""Scaling of the Ray batch (asrgguf/cluster.py) on this machine: N files of S seconds, fixed work
(--bench-tokens), through `cluster.run` with a fresh local Ray per configuration (WORKERSxTHREADS),
and the local batch (`asrgguf run --threads T`, no Ray) as the baseline. Configurations run in turn,
--rounds times (interleaved, so a busy machine slows all of them alike).

Reported per run: wall time (from the call to the summary, Ray's start included), audio seconds per
wall second, the same while busy (the sum over actors of each one's audio / its time on files: the rate
with start-up and idle tails left out; for the local batch audio / the sum of each file's time), Ray's
own start (`ray.init`), each actor's model load and peak RSS (ru_maxrss of the actor's process), and
the time until the first actor was ready to work (Ray start + actor process + imports + model load).

    python bench/cluster.py --gguf /work/bench/Qwen3-ASR-0.6B/Qwen3-ASR-0.6B-q8_0.gguf \\
        --files 6 --seconds 30 --bench-tokens 32 --configs local1x2,1x2,2x1 --rounds 2

Figures: docs/cluster.md ("Scaling on this machine").
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def make_inputs(d: Path, n: int, seconds: float) -> Path:
    import support.demo_speech as speech

    d.mkdir(parents=True, exist_ok=True)
    rng = __import__("random").Random(0)
    for i in range(n):
        p = d / f"rec{i:02d}.wav"
        if p.exists():
            continue
        parts, total = [], 0
        sr = 22050
        while total < seconds * sr:
            tmp = d / f".s{i}.wav"
            speech.write_wav(tmp, speech.sentence(rng), "en", 160)
            w, sr = sf.read(tmp, dtype="float32")
            tmp.unlink()
            parts += [w, np.zeros(int(0.5 * sr), np.float32)]
            total += len(w) + int(0.5 * sr)
        sf.write(p, np.concatenate(parts)[: int(seconds * sr)], sr)
    return d


def run_local(gguf: str, inputs: Path, out: Path, threads: int, bench_tokens: int) -> dict:
    cmd = [sys.executable, "-m", "asrgguf.cli", "run", "--gguf", gguf, str(inputs), "--output-dir", str(out),
           "--format", "json", "--threads", str(threads), "--bench-tokens", str(bench_tokens), "--overwrite"]
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read()
    if status != 0:
        raise SystemExit(f"local run failed: {err}")
    import json

    docs = [json.loads(f.read_text()) for f in sorted(out.glob("*.json"))]
    audio = sum(d["duration"] for d in docs)
    load = docs[0]["timings"]["load"]
    busy = audio / sum(d["timings"]["wall"] for d in docs)
    return {"wall": wall, "audio": audio, "first_ready": None, "ray_init": 0.0, "loads": [load], "busy": busy,
            "rss": [ru.ru_maxrss / 1024], "line": err.strip().splitlines()[-1]}


def run_ray(gguf: str, inputs: Path, out: Path, workers: int, threads: int, bench_tokens: int) -> dict:
    import ray

    from asrgguf import cluster
    from asrgguf.loading import EngineConfig

    t0 = time.perf_counter()
    cluster.connect("local")
    ray_init = time.perf_counter() - t0
    first = []

    def on_file(row):
        if not first:
            first.append(time.perf_counter() - row["seconds"] - t0)
    try:
        res = cluster.run([str(inputs)], str(out), EngineConfig(gguf=gguf), ray="local", workers=workers,
                          threads_per_worker=threads, fmt="json", overwrite=True,
                          options={"bench_tokens": bench_tokens}, on_file=on_file)
    finally:
        ray.shutdown()
    wall = time.perf_counter() - t0
    ws = list(res.workers.values())
    return {"wall": wall, "audio": res.summary.audio_seconds, "first_ready": first[0], "ray_init": ray_init,
            "loads": [w.start_s for w in ws], "busy": sum(w.audio_s / w.busy_s for w in ws if w.busy_s),
            "rss": [w.peak_rss_mb for w in ws],
            "files": [w.files for w in ws], "line": res.summary.line()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--files", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--bench-tokens", type=int, default=32)
    ap.add_argument("--configs", default="local1x2,1x2,2x1", help="WORKERSxTHREADS, or localNxT (no Ray; N=1)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "bench_cluster"))
    a = ap.parse_args()
    work = Path(a.work)
    inputs = make_inputs(work / "in", a.files, a.seconds)
    print(f"{a.files} files x {a.seconds:g} s, --bench-tokens {a.bench_tokens}, model {Path(a.gguf).name}\n")
    print("| run | round | load avg before | wall s | audio s / s | audio s / s while busy | ray.init s "
          "| first actor ready s | model load per actor s | peak RSS per actor MB |")
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for r in range(a.rounds):
        for cfg in a.configs.split(","):
            local = cfg.startswith("local")
            w, t = (int(x) for x in cfg.removeprefix("local").split("x"))
            out = work / f"out-{cfg}"
            load = os.getloadavg()[0]
            x = run_local(a.gguf, inputs, out, t, a.bench_tokens) if local else \
                run_ray(a.gguf, inputs, out, w, t, a.bench_tokens)
            print(f"# {cfg} round {r + 1}: {x['line']}", file=sys.stderr, flush=True)
            name = f"local batch, 1 process x {t} threads" if local else f"Ray, {w} worker(s) x {t} thread(s)"
            first = f"{x['first_ready']:.1f}" if x["first_ready"] is not None else "—"
            print(f"| {name} | {r + 1} | {load:.1f} | {x['wall']:.1f} | {x['audio'] / x['wall']:.2f} | {x['busy']:.2f} "
                  f"| {x['ray_init']:.1f} | {first} | {', '.join(f'{v:.1f}' for v in x['loads'])} "
                  f"| {', '.join(f'{v:.0f}' for v in x['rss'])} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
