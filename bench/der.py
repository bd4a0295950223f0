"""Diarization error rate of asrgguf/speakers.py on espeak-ng conversations of 2-4 voices with known turns.

Each conversation: distinct demo sentences (tests/support/demo_speech.py), one or two per turn, the voice changing
at every turn (espeak-ng voices of different accents, variants and pitches), 0.2-2 s of silence between
turns, no overlap; every other file also has a 4-s silence and 3 s of pink noise between two turns.

DER (a documented implementation of the standard definition, as NIST md-eval / pyannote.metrics with
collar 0.25 and no overlap): time is scored in 10-ms frames; frames within 0.25 s of a reference turn's
start or end are not scored; reference and hypothesis labels are matched one to one to maximise their
common time (Hungarian assignment); DER = (missed speech + false alarm + speaker confusion) / reference
speech, over the scored frames of all files. Speaker count: files where the number of hypothesis speakers
equals the reference's (when not given).

    flock /tmp/asrgguf-bench.lock python3 bench/der.py --files 12 [--oracle]

Figures: docs/speakers.md ("Accuracy and cost").
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from proc_stats import cpu_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import support.demo_speech as speech  # noqa: E402

SR = 16000
FRAME = 0.01
COLLAR = 0.25
VOICES = [("en-us+m3", 35), ("en-gb-x-rp+f2", 70), ("en-029+m1", 55), ("en-gb-scotland+f4", 80),
          ("en-us-nyc+m7", 45), ("en+f5", 65)]


def conversation(seed: int, n_voices: int, tmp: Path, turns: int = 10, gaps: tuple = (0.2, 2.0),
                 per_turn: tuple = (1, 1, 2), noise: bool | None = None):
    """(16 kHz float32 wav, [(start, end, voice)]): `turns` turns of one or more sentences each (a choice of
    per_turn), the voice changing at every turn, silences drawn from `gaps` (seconds) between them; noise
    (default: odd seeds) adds a 4-s silence and 3 s of pink noise after the middle turn."""
    from asrgguf import audio

    r = random.Random(seed)
    rng = np.random.default_rng(seed)
    voices = r.sample(VOICES, n_voices)
    texts = iter(speech.sentences(1000 + seed, turns * 2))
    parts, ref, n, prev = [np.zeros(int(0.5 * SR), np.float32)], [], int(0.5 * SR), None
    for t in range(turns):
        v = r.choice([x for x in voices if x != prev] if t >= n_voices else [voices[t]])
        prev = v
        text = " ".join(next(texts) for _ in range(r.choice(per_turn)))
        p = tmp / f"t{seed}_{t}.wav"
        subprocess.run(["espeak-ng", "-v", v[0], "-p", str(v[1]), "-s", "160", "-w", str(p), text], check=True)
        c = audio.load(str(p))
        idx = np.flatnonzero(np.abs(c) > 0.01)
        c = c[idx[0]:idx[-1] + 1]
        ref.append((n / SR, (n + c.size) / SR, v[0]))
        parts.append(c)
        n += c.size
        gap = np.zeros(int(rng.uniform(*gaps) * SR), np.float32)
        if (seed % 2 if noise is None else noise) and t == turns // 2:   # a long silence and a noise burst in every other file
            spec = np.fft.rfft(rng.standard_normal(3 * SR))
            f = np.arange(spec.size, dtype=np.float64)
            f[0] = 1
            burst = np.fft.irfft(spec / np.sqrt(f), 3 * SR)
            gap = np.concatenate([np.zeros(4 * SR, np.float32), (burst / np.abs(burst).max() * 0.02).astype(
                np.float32), gap])
        parts.append(gap)
        n += gap.size
    return np.concatenate(parts), ref


def frames(turns, n: int) -> np.ndarray:
    """Label index per 10-ms frame (-1: nobody), later turns over earlier ones."""
    lab = np.full(n, -1, np.int64)
    names = sorted({t[2] for t in turns})
    for s, e, who in turns:
        lab[int(round(s / FRAME)):int(round(e / FRAME))] = names.index(who)
    return lab


def der_counts(ref, hyp, duration: float) -> dict:
    from scipy.optimize import linear_sum_assignment

    n = int(np.ceil(duration / FRAME)) + 1
    r, h = frames(ref, n), frames(hyp, n)
    scored = np.ones(n, bool)
    c = int(round(COLLAR / FRAME))
    for s, e, _ in ref:
        for b in (int(round(s / FRAME)), int(round(e / FRAME))):
            scored[max(0, b - c):b + c] = False
    r, h = r[scored], h[scored]
    nr, nh = r.max(initial=-1) + 1, h.max(initial=-1) + 1
    both = (r >= 0) & (h >= 0)
    overlap = np.zeros((max(nr, 1), max(nh, 1)), np.int64)
    np.add.at(overlap, (r[both], h[both]), 1)
    rows, cols = linear_sum_assignment(-overlap)
    matched = int(overlap[rows, cols].sum())
    return {"speech": int((r >= 0).sum()), "miss": int(((r >= 0) & (h < 0)).sum()),
            "false_alarm": int(((r < 0) & (h >= 0)).sum()), "confusion": int(both.sum()) - matched}


def score(data, hyps) -> tuple[int, float, list[int]]:
    """(files whose speaker count is right, pooled DER, counts found) of hypotheses for cached files
    (dicts with "k" voices, "ref" turns, "dur" seconds): bench/count_sweep.py's and count_levers.py's table."""
    tot = {"speech": 0.0, "miss": 0.0, "false_alarm": 0.0, "confusion": 0.0}
    found = []
    for f, hyp in zip(data, hyps):
        for k, v in der_counts(f["ref"], hyp, f["dur"]).items():
            tot[k] += v
        found.append(len({h[2] for h in hyp}))
    ok = sum(x == f["k"] for x, f in zip(found, data))
    return ok, (tot["miss"] + tot["false_alarm"] + tot["confusion"]) / tot["speech"], found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--oracle", action="store_true", help="give the number of speakers")
    ap.add_argument("--json", default=None, help="write the per-file results here")
    a = ap.parse_args()
    from asrgguf.speakers import Diarizer

    t = time.perf_counter()
    d = Diarizer()
    load_s = time.perf_counter() - t
    rows, total, audio_s, run_s = [], {"speech": 0, "miss": 0, "false_alarm": 0, "confusion": 0}, 0.0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(a.files):
            k = 2 + i % 3
            wav, ref = conversation(i, k, Path(tmp))
            t = time.perf_counter()
            hyp = d.turns(wav, speakers=k if a.oracle else None)
            dt = time.perf_counter() - t
            counts = der_counts(ref, hyp, wav.size / SR)
            for key in total:
                total[key] += counts[key]
            found = len({h[2] for h in hyp})
            rows.append({"file": i, "voices": k, "found": found, "seconds": round(wav.size / SR, 1),
                         "diarize_s": round(dt, 2),
                         "der": round((counts["miss"] + counts["false_alarm"] + counts["confusion"])
                                      / max(1, counts["speech"]), 4)})
            audio_s += wav.size / SR
            run_s += dt
            print(json.dumps(rows[-1]), flush=True)
    der = (total["miss"] + total["false_alarm"] + total["confusion"]) / max(1, total["speech"])
    summary = {"cpu": cpu_line(), "files": a.files, "oracle": a.oracle, "der": round(der, 4),
               "miss": round(total["miss"] / total["speech"], 4),
               "false_alarm": round(total["false_alarm"] / total["speech"], 4),
               "confusion": round(total["confusion"] / total["speech"], 4),
               "count_correct": sum(r["found"] == r["voices"] for r in rows) / len(rows),
               "audio_seconds": round(audio_s, 1), "diarize_seconds": round(run_s, 1),
               "seconds_per_audio_minute": round(run_s / audio_s * 60, 2), "load_s": round(load_s, 2),
               "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    print(json.dumps(summary, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps({"summary": summary, "files": rows}, indent=1))


if __name__ == "__main__":
    main()
