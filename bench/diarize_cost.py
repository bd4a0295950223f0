"""Diarization cost on a long recording, streamed: seconds per audio hour and peak RSS, for two lengths.

The recording is made of bench/der.py's conversations (2-4 espeak-ng voices, seeds 0, 1, 2 ...), written to disk first
and read back (memory-mapped) in 100-ms blocks into `Diarizer.turns_of_blocks`, so the script holds no more
than a block: what grows with the length is the diarizer's own memory. Each length runs in a fresh
process (peak RSS is per process); the diarizer's load is timed apart.

    flock /tmp/asrgguf-bench.lock python3 bench/diarize_cost.py --minutes 3 12

Figures: docs/speakers.md ("Accuracy and cost", windowed).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

SR = 16000


def one(minutes: float) -> dict:
    import der
    from proc_stats import cpu_line

    from asrgguf.speakers import Diarizer

    tmp = tempfile.TemporaryDirectory()
    files, total, seed = [], 0.0, 0
    while total < minutes * 60:   # synthesised first, to disk (not timed, not held)
        wav, _ = der.conversation(seed, 2 + seed % 3, Path(tmp.name))
        files.append(Path(tmp.name) / f"c{seed}.npy")
        np.save(files[-1], wav)
        total += wav.size / SR
        seed += 1
        del wav
    t = time.perf_counter()
    d = Diarizer()
    load_s = time.perf_counter() - t
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fed = {"s": 0.0}

    def blocks():
        for f in files:
            wav = np.load(f, mmap_mode="r")
            for k in range(0, wav.size, SR // 10):
                yield np.array(wav[k:k + SR // 10])
            fed["s"] += wav.size / SR

    t = time.perf_counter()
    turns = d.turns_of_blocks(blocks())
    run_s = time.perf_counter() - t
    tmp.cleanup()
    return {"cpu": cpu_line(), "audio_s": round(fed["s"], 1), "load_s": round(load_s, 2), "diarize_s": round(run_s, 1),
            "seconds_per_audio_hour": round(run_s / fed["s"] * 3600, 1), "turns": len(turns),
            "speakers": len({x.speaker for x in turns}), "peak_rss_after_load_mb": round(rss_loaded, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[3, 12])
    ap.add_argument("--one", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(a.one)))
        return
    for m in a.minutes:   # includes the conversations' synthesis (espeak-ng), a small share
        r = subprocess.run([sys.executable, __file__, "--one", str(m)], capture_output=True, text=True, check=True)
        print(r.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
