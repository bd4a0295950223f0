#!/usr/bin/env python3
"""Positions prefilled per step of a live stream, with and without the kept sequence (`keep_kv`): counted, not timed.

    python bench/live_prefill.py [--seconds 20] [--step-seconds 1] [--threads 2]

One utterance of the demo model's held-out sentences (tests/support/demo_speech.py, espeak-ng with the held-out
voice, 0.2 s apart so that the detector never ends it) of about `--seconds`, between 1 s and 2 s of silence,
fed to `Transcriber.stream(language="English")` in 100-ms blocks (`wait=True`, partials "draft"), once with
`keep_kv=True` and once with `keep_kv=False`. For each partial step and the final: the prompt's positions
(prefix + audio rows + suffix), the positions the step evaluated in its prefill (the prompt's changed part and
the draft) and the positions it took from the kept sequence, from the scheduler's request counters
(`prefilled_tokens`, `reused_tokens`). Checks that the events are the same both ways. Counts do not depend on
the CPU (they do on the audio: the clamp's refreshes).

Figures: docs/streaming.md ("Kept sequence": the table of prefilled positions).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

SR = 16000


def utterance(seconds: float) -> np.ndarray:
    import support.demo_speech as speech
    from support.demo_speech import SPEED

    from asrgguf.audio import prepare

    es = speech.Espeak()
    parts, n = [np.zeros(SR, np.float32)], 0
    for t in speech.held_out(200):
        wav, _, end = es.synth(t, speech.TEST_VOICE, SPEED)
        x = prepare(wav[:end].astype(np.float32) / 32768.0, es.sample_rate)
        parts += [x, np.zeros(int(0.2 * SR), np.float32)]
        n += x.size + int(0.2 * SR)
        if n >= seconds * SR:
            break
    return np.concatenate(parts + [np.zeros(2 * SR, np.float32)])


def run(tr, wav: np.ndarray, keep: bool, step_seconds: float):
    reqs = []
    submit = tr.scheduler.submit
    tr.scheduler.submit = lambda r: reqs.append(r) or submit(r)
    try:
        s = tr.stream(language="English", keep_kv=keep, step_seconds=step_seconds)
        events = []
        for i in range(0, wav.size, 1600):
            events += s.feed(wav[i:i + 1600])
        events += s.finish()
    finally:
        tr.scheduler.submit = submit
    rows = [(r.stats["prompt_tokens"], r.stats["prefilled_tokens"], r.stats["reused_tokens"])
            for r in reqs if r is not s._final_req]
    f = s._final_req.stats
    rows.append((f["prompt_tokens"], f["prefilled_tokens"], f["reused_tokens"]))
    return [(e.type, e.text, e.start, e.end) for e in events], rows


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the utterance (about)")
    ap.add_argument("--step-seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    from asrgguf import Transcriber

    wav = utterance(a.seconds)
    with Transcriber.from_pretrained("demo", threads=a.threads) as tr:
        ev1, kept = run(tr, wav, True, a.step_seconds)
        ev0, fresh = run(tr, wav, False, a.step_seconds)
    finals = [e for e in ev1 if e[0] == "final"]
    print(f"utterance {finals[0][3] - finals[0][2]:.1f} s (final), {len(kept) - 1} partials; "
          f"events equal with and without: {ev1 == ev0}")
    print("| step | speech so far (s, about) | prompt positions | prefilled without "
          "| prefilled with kept sequence | reused |")
    print("|---|---:|---:|---:|---:|---:|")
    for i, ((p, pf, r), (_, pf0, _)) in enumerate(zip(kept, fresh)):
        last = i == len(kept) - 1
        name = "final" if last else str(i + 1)
        secs = f"{finals[0][3] - finals[0][2]:.1f}" if last else f"{(i + 1) * a.step_seconds:g}"
        print(f"| {name} | {secs} | {p} | {pf0} | {pf} | {r} |")
    t1, t0 = sum(x[1] for x in kept), sum(x[1] for x in fresh)
    print(f"| all | | {sum(x[0] for x in kept)} | {t0} | {t1} ({t1 / t0:.0%}) | {sum(x[2] for x in kept)} |")


if __name__ == "__main__":
    main()
