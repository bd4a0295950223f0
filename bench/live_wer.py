#!/usr/bin/env python3
"""Streaming WER of the demo model: a live stream's finals against offline `asrgguf run` on the same audio.

    python bench/live_wer.py --n 60 [--partials draft] [--threads 2]

The stream: the first N held-out sentences of tests/support/demo_speech.py (training never uses them) spoken by
espeak-ng with the held-out voice (TEST_VOICE, speed 160, as bench/demo_wer.py), 0.8 to 2.0 s of silence
between them, 16 kHz float32. It is fed to `Transcriber.stream()` in 100-ms blocks (`wait=True`: every
partial is decoded, as in a stream the engine keeps up with); the finals' texts, joined, are scored
against the sentences joined (jiwer, lower case, no punctuation, bench/demo_wer.py's normalize). The same
audio is written as a float32 WAV and transcribed by `asrgguf run` (30-s pieces cut at quiet points, as
for any file), by `asrgguf run --vad` with the stream's detector settings (silence 500 ms, pad 200 ms)
and, as a last row, each sentence's own audio by one `asrgguf run` over the clips.

Figures: docs/streaming.md ("Measured": streaming WER).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import support.demo_speech as speech  # noqa: E402
from support.demo_speech import SPEED, normalize, wer  # noqa: E402
from proc_stats import cpu_line  # noqa: E402

SR = 16000


def make_stream(n: int, seed: int = 3) -> tuple[np.ndarray, list[str], list[np.ndarray]]:
    from asrgguf.audio import prepare

    rng = np.random.default_rng(seed)
    es = speech.Espeak()
    texts = speech.held_out(n)
    clips, parts = [], [np.zeros(SR // 2, np.float32)]
    for t in texts:
        wav, _, end = es.synth(t, speech.TEST_VOICE, SPEED)
        x = prepare(wav[:end].astype(np.float32) / 32768.0, es.sample_rate)
        clips.append(x)
        parts += [x, np.zeros(int(rng.uniform(0.8, 2.0) * SR), np.float32)]
    return np.concatenate(parts), texts, clips


def run_cli(paths: list[Path], out: Path, threads: int | None, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "asrgguf.cli", "run", "--model", "demo", "--language", "English",
           "--output-dir", str(out), "--format", "txt", "--quiet", *extra, *map(str, paths)]
    if threads:
        cmd += ["--threads", str(threads)]
    subprocess.run(cmd, check=True, cwd=REPO)
    return [(out / (p.stem + ".txt")).read_text().strip() for p in paths]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=60, help="held-out sentences in the stream (at least 40)")
    ap.add_argument("--partials", default="draft", help="Stream(partials=...): draft, rollback or full")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--show", action="store_true", help="print the stream's finals and the offline text")
    a = ap.parse_args(argv)
    import soundfile as sf

    from asrgguf import Transcriber

    wav, refs, clips = make_stream(a.n)
    with Transcriber.from_pretrained("demo", threads=a.threads) as tr:
        s = tr.stream(language="English", partials=a.partials)
        t0 = time.perf_counter()
        events = []
        for i in range(0, wav.size, 1600):
            events += s.feed(wav[i:i + 1600])
        events += s.finish()
        dt = time.perf_counter() - t0
        finals = [e.text for e in events if e.type == "final"]
        n_partials = sum(e.type == "partial" for e in events)
        kept = s._final_req.stats["draft_accepted"], s._final_req.stats["draft_tokens"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        whole = tmp / "stream.wav"
        sf.write(whole, wav, SR, subtype="FLOAT")
        (tmp / "clips").mkdir()
        paths = []
        for i, c in enumerate(clips):
            paths.append(tmp / "clips" / f"{i:03d}.wav")
            sf.write(paths[-1], c, SR, subtype="FLOAT")
        offline = run_cli([whole], tmp / "out", a.threads)[0]
        offline_vad = run_cli([whole], tmp / "out3", a.threads, "--vad", "--vad-min-silence-ms", "500",
                              "--vad-speech-pad-ms", "200")[0]
        per_clip = run_cli(paths, tmp / "out2", a.threads)
    ref = " ".join(refs)
    w_stream, w_off, w_vad, w_clip = (100 * wer([ref], [h]) for h in
                                      (" ".join(finals), offline, offline_vad, " ".join(per_clip)))
    n_words = len(normalize(ref).split())
    if a.show:
        print("stream finals:\n" + "\n".join(finals) + "\n\noffline:\n" + offline + "\n")
    print(f"Demo model (q8_0), {a.n} held-out sentences ({n_words} words), voice {speech.TEST_VOICE}, speed {SPEED}, "
          f"{wav.size / SR:.0f} s with 0.8-2.0 s pauses, 100-ms blocks, partials {a.partials}, {a.threads} threads; "
          f"CPU: {cpu_line()}\n")
    print("| transcription | WER |\n|---|---:|")
    print(f"| live stream's finals ({len(finals)} utterances, {n_partials} partials) | {w_stream:.2f} % |")
    print(f"| `asrgguf run` on the same audio (one file) | {w_off:.2f} % |")
    print(f"| `asrgguf run --vad --vad-min-silence-ms 500 --vad-speech-pad-ms 200` on the same audio "
          f"(the stream's detector settings) | {w_vad:.2f} % |")
    print(f"| `asrgguf run` on each sentence's own audio | {w_clip:.2f} % |")
    print(f"\nstream wall time {dt:.1f} s for {wav.size / SR:.0f} s of audio; finals' draft tokens kept: "
          f"{kept[0]} of {kept[1]}")


if __name__ == "__main__":
    sys.exit(main())
