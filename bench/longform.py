"""Peak RSS and speed of `asrgguf run` on a short and a long synthetic recording (issue 5).

Makes recordings of espeak-ng sentences separated by 0.2-2.5 s of faint noise (written block by
block, 22.05 kHz 16-bit wav, so reading also resamples and peak-scans), transcribes each in a
fresh process (`python -m asrgguf.cli run ... --output-dir`), takes that process's peak RSS from
wait4(), and writes a table to docs/longform.md (replacing the part between the markers).

    python bench/longform.py                          # tiny random checkpoint, 10 min vs 3 h
    python bench/longform.py --gguf Qwen3-ASR-0.6B-q8_0.gguf --minutes 10 --minutes 60
    # sequential vs parallel pieces (random weights: a fixed number of tokens per piece)
    python bench/longform.py --gguf 0.6B-q8_0.gguf --minutes 10 --bench-tokens 100 \
        --parallel 1 --parallel 4 --marker bench_parallel

Figures: docs/longform.md (the tables between its markers), docs/benchmarks.md (10 and 20 minutes).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from support.speech_text import SENTENCES  # noqa: E402
from proc_stats import cpu_line  # noqa: E402  (bench/, this script's own directory)


def make_recording(path: Path, minutes: float, work: Path, sr: int = 22050, seed: int = 0) -> Path:
    clips = []
    for i, s in enumerate(SENTENCES):
        p = work / f"s{i}.wav"
        if not p.exists():
            subprocess.run(["espeak-ng", "-s", "160", "-w", str(p), s], check=True)
        w, r = sf.read(p, dtype="float32")
        assert r == sr, r
        clips.append(w)
    rng = np.random.default_rng(seed)
    want = int(minutes * 60 * sr)
    n = 0
    with sf.SoundFile(path, "w", sr, 1, subtype="PCM_16") as f:
        while n < want:
            c = clips[int(rng.integers(len(clips)))] * float(rng.uniform(0.3, 1.0))
            gap = rng.standard_normal(int(rng.uniform(0.2, 2.5) * sr)).astype(np.float32) * 1e-3
            block = np.concatenate([c, gap])[: want - n]
            f.write(block)
            n += len(block)
    return path


def run_measured(cmd: list[str]) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS in kB of that process, exit code, stderr)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - t0, ru.ru_maxrss, p.returncode, err


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", help="decoder GGUF (default: a tiny random checkpoint, made here)")
    ap.add_argument("--minutes", type=float, action="append", help="recording lengths (default 10 and 180)")
    ap.add_argument("--piece-seconds", type=float, default=30.0)
    ap.add_argument("--max-new-tokens", type=int, default=4)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--parallel", type=int, action="append", help="pieces decoded at once (default 1); repeatable")
    ap.add_argument("--bench-tokens", type=int, default=None,
                    help="generate exactly N tokens per piece (random weights: speech-like work per piece)")
    ap.add_argument("--marker", default="bench_longform", help="name of the table's markers in --doc")
    ap.add_argument("--work", default=None, help="scratch directory (default: a temp dir, removed)")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "longform.md"))
    a = ap.parse_args()
    minutes = a.minutes or [10.0, 180.0]
    parallels = a.parallel or [1]
    begin, end = f"<!-- {a.marker}:begin -->", f"<!-- {a.marker}:end -->"
    work = Path(a.work or tempfile.mkdtemp(prefix="bench_longform."))
    work.mkdir(parents=True, exist_ok=True)
    try:
        dec = a.gguf
        model = Path(dec).name if dec else ""
        if not dec:
            from support.random_checkpoint import write_checkpoint

            from asrgguf.convert import quantize_checkpoint

            ck = work / "tiny-gqa"
            write_checkpoint(ck, size="tiny", seed=0, mha=False, tied=False)
            dec, _ = quantize_checkpoint(ck, "q8_0", work / "gguf", "f16", progress=False)
            model = "tiny random checkpoint (tests/support/random_checkpoint.py --size tiny), q8_0 + f16 mmproj"
        rows = []
        for m in minutes:
            rec = make_recording(work / f"rec-{m:g}min.wav", m, work)
            for par in parallels:
                out = work / f"out-{m:g}-{par}"
                cmd = [sys.executable, "-m", "asrgguf.cli", "run", "--gguf", str(dec), str(rec), "--output-dir",
                       str(out), "--format", "json", "--overwrite", "--max-new-tokens", str(a.max_new_tokens),
                       "--piece-seconds", str(a.piece_seconds), "--parallel", str(par)]
                if a.bench_tokens:
                    cmd += ["--bench-tokens", str(a.bench_tokens)]
                if a.threads:
                    cmd += ["--threads", str(a.threads)]
                wall, rss, rc, err = run_measured(cmd)
                if rc != 0:
                    print(err, file=sys.stderr)
                    return 1
                d = json.loads((out / f"rec-{m:g}min.json").read_text())
                t = d["timings"]
                rows.append({"minutes": m, "parallel": par, "pieces": t["pieces"], "audio_s": t["audio_seconds"],
                             "wall_s": wall, "transcribe_s": t["wall"], "read_s": t["audio"],
                             "encoder_s": t["features"] + t["encoder"], "prefill_s": t["prefill"],
                             "decode_s": t["decode"], "tokens": t["generated_tokens"], "rss_mb": rss / 1024,
                             "s_per_audio_h": t["wall"] / t["audio_seconds"] * 3600})
                print(json.dumps(rows[-1]), flush=True)
            rec.unlink()
        base = rows[0]["rss_mb"]
        tok = f"--bench-tokens {a.bench_tokens}" if a.bench_tokens else f"--max-new-tokens {a.max_new_tokens}"
        lines = [begin, "",
                 f"Measured by `python bench/longform.py {' '.join(sys.argv[1:])}`".rstrip() + " on "
                 f"{cpu_line()}, {os.cpu_count()} CPUs; model: {model}; pieces of "
                 f"{a.piece_seconds:g} s, {tok}. Each row is one fresh "
                 "`asrgguf run` process; peak RSS from wait4().", "",
                 "| recording | --parallel | pieces | process wall | transcribe | of which read+resample "
                 "| encoder | prefill | decode | s per audio hour | peak RSS | RSS vs first |",
                 "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in rows:
            lines.append(f"| {r['minutes']:g} min | {r['parallel']} | {r['pieces']} | {r['wall_s']:.1f} s "
                         f"| {r['transcribe_s']:.1f} s | {r['read_s']:.1f} s | {r['encoder_s']:.1f} s "
                         f"| {r['prefill_s']:.1f} s | {r['decode_s']:.1f} s | {r['s_per_audio_h']:.0f} "
                         f"| {r['rss_mb']:.0f} MB | {r['rss_mb'] / base - 1:+.1%} |")
        lines += ["", end]
        doc = Path(a.doc)
        text = doc.read_text() if doc.exists() else "# Long recordings\n\n"
        block = "\n".join(lines)
        if begin in text and end in text:
            text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        doc.parent.mkdir(parents=True, exist_ok=True)
        doc.write_text(text)
        print(block)
        return 0
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
