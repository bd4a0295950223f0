#!/usr/bin/env python3
"""Decode speed inside `asrgguf run` with the decode loop in C, with the Python loop, and of the decoder alone.

    python bench/decode_loop.py --gguf random-0.6b-q8_0.gguf --mmproj mmproj-random-0.6b-f16.gguf \\
        --seconds 60 --tokens 200 --threads 2 --rounds 3

Contenders, each in its own process, in a rotated order every round (medians over the rounds):
  run-c, run-python   `asrgguf run AUDIO --piece-seconds 1200 --bench-tokens N --format json` (the CLI's own
                      code, called in-process by a child of this script) with ASRGGUF_DECODE_LOOP=c / python
  alone               the decoder alone: the same GGUF, a prefill of the run's prompt length (random
                      embeddings), then N-1 steps of `Decoder.step` + numpy's argmax, nothing else
For each: decode tok/s over the decode phase's wall time (end of the prefill to the piece handed back:
every llama_decode call and whatever runs between them), the time inside llama_decode alone, and what the
loop adds per step (wall minus llama_decode, over the steps: what a GPU step of ~1.8 ms would feel).
Audio: --audio FILE, or --seconds S of espeak-ng speech (tests/support/speech_text.py) made into --workdir.

Figures: docs/native.md ("The decode loop in C").
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from proc_stats import cpu_line  # noqa: E402

PY = sys.executable


# --------------------------------------------------------------------------- children
def _instrument(marks: dict) -> None:
    """Time llama_decode inside decode steps (both loops) and the decode phase of the run."""
    import asrgguf.decode_loop as DL
    import asrgguf.decoder as D
    import asrgguf.generate as G
    import asrgguf.scheduler as S

    marks.update(llama_s=0.0, steps=0)
    in_step = [False]
    dec_decode, dec_step = D.Decoder._decode, D.Decoder.step

    def _decode(self, batch):
        t = time.perf_counter()
        dec_decode(self, batch)
        if in_step[0]:
            marks["llama_s"] += time.perf_counter() - t
            marks["steps"] += 1

    def step(self, *a):
        in_step[0] = True
        try:
            dec_step(self, *a)
        finally:
            in_step[0] = False

    loop_run = DL.Loop.run

    def run(self, *a, **k):
        out = loop_run(self, *a, **k)
        marks["llama_s"] += self._args.llama_ns * 1e-9
        marks["steps"] += self._args.steps
        return out

    add, finished = G.Batcher.add, S.Scheduler._finished

    def _add(self, job):
        add(self, job)
        marks["prefilled"] = time.perf_counter()

    def _finished(self, job):
        marks.setdefault("finished", time.perf_counter())
        finished(self, job)

    D.Decoder._decode, D.Decoder.step, DL.Loop.run = _decode, step, run
    G.Batcher.add, S.Scheduler._finished = _add, _finished


def child_run(a, cli_args: list[str]) -> None:
    marks: dict = {}
    _instrument(marks)
    from asrgguf.cli import main

    main(cli_args, standalone_mode=False)
    marks["decode_wall"] = marks["finished"] - marks["prefilled"]
    Path(a.marks).write_text(json.dumps(marks))


def child_alone(a) -> None:
    import numpy as np

    from asrgguf.decoder import Decoder, DecoderOptions

    marks: dict = {}
    _instrument(marks)
    steps = a.tokens - 1   # as in a run: the first token comes from the prefill's logits, the last is not decoded
    d = Decoder(a.gguf, DecoderOptions(n_ctx=a.positions + a.tokens + 8, n_threads=a.threads))
    emb = (np.random.default_rng(0).standard_normal((a.positions, d.n_embd)) * 0.02).astype(np.float32)
    d.eval_embeddings(emb, 0, logits_last=True)
    tok = int(np.argmax(d.logits()))
    t0 = time.perf_counter()
    for i in range(steps):
        d.step([tok], [a.positions + i], [0])
        tok = int(np.argmax(d.logits()))
    marks["decode_wall"] = time.perf_counter() - t0
    d.close()
    Path(a.marks).write_text(json.dumps(marks))


# --------------------------------------------------------------------------- parent
def make_audio(seconds: float, workdir: Path) -> Path:
    import numpy as np
    import soundfile as sf

    sys.path.insert(0, str(REPO / "tests"))
    from support.demo_speech import write_wav
    from support.speech_text import SENTENCES

    out = workdir / f"speech{seconds:g}.wav"
    if out.exists():
        return out
    parts, n, sr = [], 0, None
    i = 0
    while sr is None or n < seconds * sr:
        p = workdir / f".s{i % len(SENTENCES)}.wav"
        if not p.exists():
            write_wav(p, SENTENCES[i % len(SENTENCES)], "en", 160)
        w, sr = sf.read(p, dtype="float32")
        parts += [w, np.zeros(int(0.3 * sr), np.float32)]
        n += len(w) + int(0.3 * sr)
        i += 1
    sf.write(out, np.concatenate(parts)[:int(seconds * sr)], sr)
    return out


def run_contender(name: str, a, audio: Path, workdir: Path, k: int) -> dict:
    marks = workdir / f"{name}-{k}.marks.json"
    out = workdir / f"{name}-{k}.stdout"
    base = [PY, str(Path(__file__).resolve()), "--child", "alone" if name == "alone" else "run", "--marks",
            str(marks), "--gguf", a.gguf, "--tokens", str(a.tokens), "--threads", str(a.threads),
            "--positions", str(a.positions)]
    env = dict(os.environ)
    if name != "alone":
        env["ASRGGUF_DECODE_LOOP"] = name.split("-")[1]
        base += ["--", "run", str(audio), "--gguf", a.gguf, "--mmproj", a.mmproj, "--format", "json", "--quiet",
                 "--threads", str(a.threads), "--piece-seconds", "1200", "--bench-tokens", str(a.tokens)]
    t0 = time.perf_counter()
    with open(out, "wb") as fo:
        subprocess.run(base, check=True, stdout=fo, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    m = json.loads(marks.read_text())
    r = {"name": name, "wall": wall, "steps": m["steps"], "decode_wall": m["decode_wall"], "llama_s": m["llama_s"]}
    if name != "alone":
        t = json.loads(out.read_text())["timings"]
        r.update(timings_tok_s=t["decode_tokens_per_s"], prompt_tokens=t["prompt_tokens"])
    r["tok_s"] = r["steps"] / r["decode_wall"]
    r["llama_tok_s"] = r["steps"] / r["llama_s"]
    r["overhead_us"] = (r["decode_wall"] - r["llama_s"]) / r["steps"] * 1e6
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--mmproj")
    ap.add_argument("--audio")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--positions", type=int, default=795, help="the decoder alone's prefill (60 s + prompt: 795)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--contenders", default="run-c,run-python,alone")
    ap.add_argument("--workdir", default=str(REPO / "bench-out" / "decode_loop"))
    ap.add_argument("--child", choices=["run", "alone"], help=argparse.SUPPRESS)
    ap.add_argument("--marks", help=argparse.SUPPRESS)
    a, rest = ap.parse_known_args()
    if a.child:
        rest = rest[1:] if rest[:1] == ["--"] else rest
        return child_run(a, rest) if a.child == "run" else child_alone(a)
    workdir = Path(a.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    audio = Path(a.audio) if a.audio else make_audio(a.seconds, workdir)
    names = a.contenders.split(",")
    print(f"CPU: {cpu_line()}; {a.threads} threads; {audio.name}; {a.tokens} tokens; "
          f"load before: {os.getloadavg()[0]:.2f}", flush=True)
    results: dict = {n: [] for n in names}
    for k in range(a.rounds):
        order = names[k % len(names):] + names[:k % len(names)]
        for n in order:
            r = run_contender(n, a, audio, workdir, k)
            results[n].append(r)
            print(json.dumps({kk: round(v, 4) if isinstance(v, float) else v for kk, v in r.items()}), flush=True)
    print(f"load after: {os.getloadavg()[0]:.2f}\n")
    print("| contender | decode tok/s (phase wall) | `timings` decode tok/s | inside llama_decode tok/s | "
          "added per step (us) | process wall (s) |\n|---|---:|---:|---:|---:|---:|")
    med = statistics.median
    for n in names:
        rs = results[n]
        tt = med([r["timings_tok_s"] for r in rs]) if "timings_tok_s" in rs[0] else None
        print(f"| {n} | {med([r['tok_s'] for r in rs]):.2f} | {'' if tt is None else f'{tt:.2f}'} | "
              f"{med([r['llama_tok_s'] for r in rs]):.2f} | {med([r['overhead_us'] for r in rs]):.0f} | "
              f"{med([r['wall'] for r in rs]):.1f} |")


if __name__ == "__main__":
    main()
