#!/usr/bin/env python3
"""Time cost of word alignment per audio minute, beside transcription's, on the same audio.

The aligner: a random-weight checkpoint at the published Qwen3-ForcedAligner-0.6B's shapes
(tests/support/random_checkpoint.py --aligner --size aligner-0.6b, quantized); the ASR model: the random 0.6B
pair. The audio: espeak-ng English sentences with short pauses, SECONDS long, and its own transcript
(about 150 words a minute). Alignment is one pass over all of it (at most 180 s at once); transcription
decodes 30 s pieces with exactly --tokens tokens each (random weights never stop on their own).

Also measured: the decoder's text part with the hidden states on (llama.cpp then outputs every row and
computes its vocabulary logits too) against the same rows with no output at all: the price of the
embeddings route.

    python bench/align.py --aligner AL.gguf --asr ASR.gguf [--seconds 60] [--runs 3] [--tokens 100]

Figures: docs/align.md ("Cost per audio minute at the published shapes").
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))


def speech(seconds: float, work: Path) -> tuple[np.ndarray, str]:
    import soundfile as sf

    import support.demo_speech as demo_speech
    from support.speech_text import SENTENCES

    from asrgguf.audio import load

    parts, words, n, i = [], [], 0, 0
    while n < seconds * 16000:
        s = SENTENCES[i % len(SENTENCES)]
        p = work / f"s{i % len(SENTENCES)}.wav"
        if not p.exists():
            demo_speech.write_wav(p, s, "en", 165)
        w = load(p)
        parts += [w, np.zeros(int(0.4 * 16000), np.float32)]
        words.append(s)
        n += len(w) + int(0.4 * 16000)
        i += 1
    wav = np.concatenate(parts)
    # the transcript of what is in the first SECONDS: whole sentences, the last one cut where the audio is
    keep = int(seconds * 16000)
    frac = keep / len(wav)
    text = " ".join(words)
    cut = text.split()
    text = " ".join(cut[:max(1, int(len(cut) * frac))])
    sf.write(work / "bench.wav", wav[:keep], 16000)
    return wav[:keep], text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--aligner", required=True)
    ap.add_argument("--asr", required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=100, help="tokens per 30 s piece for transcription")
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)

    from asrgguf.align import Aligner, split_units
    from asrgguf.transcribe import Transcriber

    work = Path(tempfile.mkdtemp(prefix="bench-align-"))
    wav, text = speech(a.seconds, work)
    units = split_units(text, "English")
    minutes = len(wav) / 16000 / 60

    al = Aligner.from_gguf(a.aligner, device="cpu", dtype="float32", threads=a.threads)
    tr = Transcriber.from_gguf(a.asr, device="cpu", dtype="float32", threads=a.threads)
    al.align(wav[:16000 * 5], "warm up", "English")
    tr.transcribe_all(wav[:16000 * 5], bench_tokens=4)
    # interleaved (align, transcribe, align, ...): a shared machine's load falls on both alike
    runs, tr_runs = [], []
    for _ in range(a.runs):
        t: dict = {}
        t0 = time.perf_counter()
        words = al.align(wav, text, "English", timings=t)
        t["wall"] = time.perf_counter() - t0
        runs.append(t)
        t0 = time.perf_counter()
        tr.transcribe_all(wav, bench_tokens=a.tokens, language="English")
        tr_runs.append(time.perf_counter() - t0)
    assert len(words) == len(units)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    tr_wall = statistics.median(tr_runs)
    ratio = statistics.median(x["wall"] / y for x, y in zip(runs, tr_runs))
    tr.close()

    # the embeddings route's price: the text rows with hidden states on vs the same rows with no output
    dec = al.decoder
    emb, _ = al.engine.encode(wav)
    before = dec.tokenize("<|audio_start|>")
    after = np.asarray(dec.tokenize("<|audio_end|>" + "".join(u + "<timestamp><timestamp>" for u in units)), np.int32)
    rows = np.flatnonzero(after == al.timestamp_id)
    on, off = [], []
    for _ in range(a.runs):
        for hidden in (True, False):
            dec.clear()
            pos = dec.eval_embeddings(emb, dec.eval_tokens(before, 0))
            t0 = time.perf_counter()
            if hidden:
                dec.hidden_states(after, pos, rows)
            else:
                dec.eval_tokens(after, pos)
            (on if hidden else off).append(time.perf_counter() - t0)
    dec.clear()
    n_text = len(after)
    al.close()

    cpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Model name")), "?")
    flags = next((ln.split(":", 1)[1].strip() for ln in cpu.splitlines() if ln.startswith("Flags")), "")
    simd = " ".join(f for f in flags.split() if f in ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_vnni",
                                                      "avx_vnni", "amx_int8"))
    print(f"machine: {model}; {simd}; threads {a.threads or 'all'}")
    print(f"audio: {len(wav) / 16000:.1f} s, {len(units)} words ({len(units) / minutes:.0f} a minute), "
          f"{len(emb)} audio rows + {n_text} text rows; runs: {a.runs} (medians)")
    print()
    print("| stage | seconds | per audio minute |")
    print("|---|---|---|")
    for k in ("features", "encoder", "decoder_audio", "decoder_text", "head", "wall"):
        print(f"| alignment {k} | {med[k]:.3f} | {med[k] / minutes:.3f} |")
    print(f"| transcription wall ({a.tokens} tokens / 30 s piece) | {tr_wall:.3f} | {tr_wall / minutes:.3f} |")
    print()
    print(f"text rows with hidden states on: {statistics.median(on):.3f} s; the same rows with no output: "
          f"{statistics.median(off):.3f} s (the vocabulary logits llama.cpp computes beside them)")
    load = open("/proc/loadavg").read().split()[:3] if Path("/proc/loadavg").exists() else ["?"]
    print(f"alignment / transcription (median of the interleaved pairs): {ratio:.2f}; load average at the "
          f"end: {' '.join(load)}")


if __name__ == "__main__":
    sys.exit(main())
