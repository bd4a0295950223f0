#!/usr/bin/env python3
"""Whole-process wall time of `asrgguf run` from several checkouts (before / after a change) and of llama.cpp's
libmtmd pipeline, alternating in one invocation: what a short clip costs from the process's start to its end.

    flock /tmp/asrgguf-bench.lock python bench/startup_ab.py --audio speech5.wav \\
        --gguf random-0.6b-q8_0.gguf --mmproj mmproj-random-0.6b-f16.gguf --rounds 5 \\
        before=/tmp/main-tree after=. mtmd=.

Each NAME=TREE is a directory holding an `asrgguf/` package (with its `_native/` libraries: keep their mtime,
`cp -p`, or the native repack cache is rewritten by every other run); the name `mtmd` runs that tree's
bench/mtmd_run.py instead. Commands are compare.py's (`--piece-seconds 1200`, `--bench-tokens N`, `--format
json`); a first round warms the page cache and is not counted. Printed: every run's wall time, peak RSS and the
contender's own stage times, then each contender's median and its ratio to the last contender.

Figures: docs/benchmarks.md ("A 5-s clip").
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from proc_stats import cpu_line, run_measured  # noqa: E402


def command(name: str, tree: Path, a) -> list[str]:
    if name == "mtmd":
        return [sys.executable, str(tree / "bench" / "mtmd_run.py"), a.audio, "--model", a.gguf, "--mmproj", a.mmproj,
                "--threads", str(a.threads), "--flash-attn", "auto", "--bench-tokens", str(a.tokens)]
    return [sys.executable, "-m", "asrgguf.cli", "run", "--gguf", a.gguf, "--mmproj", a.mmproj, a.audio, "--format",
            "json", "--threads", str(a.threads), "--piece-seconds", "1200", "--bench-tokens", str(a.tokens)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("contenders", nargs="+", metavar="NAME=TREE")
    ap.add_argument("--audio", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--mmproj", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="/tmp/startup_ab", help="directory for each run's stdout and stderr")
    a = ap.parse_args()
    cont = {}
    for spec in a.contenders:
        name, _, tree = spec.partition("=")
        cont[name] = (Path(tree or ".").resolve(), command(name, Path(tree or ".").resolve(), a))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print(cpu_line(), flush=True)
    walls: dict[str, list[float]] = {k: [] for k in cont}
    for r in range(a.rounds + 1):
        for name, (tree, cmd) in cont.items():
            so, se = out / f"{name}.{r}.json", out / f"{name}.{r}.stderr"
            st = run_measured(cmd, str(so), str(se), cwd=str(tree), env=dict(os.environ, PYTHONPATH=str(tree)),
                              timeout=600)
            lines = so.read_text().strip().splitlines() if st.returncode == 0 else []
            if not lines:
                raise SystemExit(f"{name}: exit {st.returncode}: {se.read_text()[-1000:]}")
            t = json.loads(lines[-1])["timings"]
            stages = {k: round(t[k], 2) for k in ("load", "encoder", "prefill", "prompt", "decode") if k in t}
            print(f"round {r}{' (warm-up)' if not r else ''} {name}: wall {st.wall_s:.2f} s, "
                  f"RSS {st.maxrss_mb:.0f} MB, {stages}", flush=True)
            if r:
                walls[name].append(st.wall_s)
    last = list(cont)[-1]
    ref = statistics.median(walls[last])
    for name, v in walls.items():
        m = statistics.median(v)
        print(f"{name}: median {m:.2f} s ({' / '.join(f'{x:.2f}' for x in v)}), x{m / ref:.3f} of {last}")


if __name__ == "__main__":
    main()
