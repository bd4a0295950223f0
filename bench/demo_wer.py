#!/usr/bin/env python3
"""Word error rate of the demo model on its held-out test set, through `asrgguf run`, per condition.

The set: the first N held-out sentences of tests/support/demo_speech.py (training excludes them) spoken by
espeak-ng with TEST_VOICE (a voice variant training never used), written as WAV files to a
temporary directory and transcribed in one `asrgguf run --output-dir` call (q8_0 decoder).
WER (jiwer) is over lower-cased words without punctuation. --condition (issue 25,
tests/support/demo_scenes.py): continuous (the sentences as espeak-ng says them), pauses (each sentence
cut into 2-4 pieces spoken apart, 0.1-2.5 s of silence between them), noise (white, pink, brown,
music-like noise in turn at 20, 15, 10 dB SNR), isolated (3-6 vocabulary words, each said alone,
0.5-1.5 s apart); all in the held-out voice.

    python bench/demo_wer.py                          # the packaged demo model, all 500 sentences
    python bench/demo_wer.py --n 20 --model /tmp/demo/qwen3-asr-demo   # a checkpoint (quantized to q8_0)
    python bench/demo_wer.py --condition isolated --n 200

Figures: docs/demo.md ("Word error rate"), docs/native.md (the bf16 encoder's WER).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import support.demo_scenes as scenes  # noqa: E402
import support.demo_speech as speech  # noqa: E402
from support.demo_speech import SPEED, normalize, wer  # noqa: E402

def write_test_set(out: Path, n: int, voice: str = speech.TEST_VOICE) -> list[tuple[Path, str]]:
    clips = []
    for i, text in enumerate(speech.held_out(n)):
        path = out / f"{i:03d}.wav"
        speech.write_wav(path, text, voice, SPEED)
        clips.append((path, text))
    return clips


def write_condition_set(out: Path, condition: str, n: int, voice: str) -> list[tuple[Path, str]]:
    import soundfile as sf

    clips = []
    for i, (x, text, _) in enumerate(scenes.test_set(condition, n, voice)):
        path = out / f"{i:03d}.wav"
        sf.write(path, x, scenes.RATE, subtype="PCM_16")
        clips.append((path, text))
    return clips


def transcribe_cli(paths: list[Path], model: str, out: Path, threads: int | None = None,
                   dtype: str = "auto") -> list[str]:
    """One `asrgguf run` over all files; the text of each, in order."""
    cmd = [sys.executable, "-m", "asrgguf.cli", "run", "--model", model, "--language", "auto",
           "--output-dir", str(out), "--format", "txt", "--quiet", "--dtype", dtype, *map(str, paths)]
    if threads:
        cmd += ["--threads", str(threads)]
    subprocess.run(cmd, check=True)
    return [(out / (p.stem + ".txt")).read_text().strip() for p in paths]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=speech.N_HELD_OUT, help="held-out sentences (the first N)")
    ap.add_argument("--model", default="demo", help="'demo' (packaged q8_0 pair) or a checkpoint directory")
    ap.add_argument("--voice", default=speech.TEST_VOICE,
                    help="espeak-ng voice (default: the held-out one; a training voice separates the two gaps)")
    ap.add_argument("--threads", type=int)
    ap.add_argument("--dtype", default="auto", help="the encoder's dtype (asrgguf run --dtype)")
    ap.add_argument("--condition", choices=scenes.CONDITIONS, default="continuous")
    ap.add_argument("--show", action="store_true", help="print every sentence that has errors")
    a = ap.parse_args(argv)
    if not 1 <= a.n <= speech.N_HELD_OUT:
        ap.error(f"--n: 1 to {speech.N_HELD_OUT} (the held-out sentences)")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "wav").mkdir()
        try:
            clips = (write_test_set(tmp / "wav", a.n, a.voice) if a.condition == "continuous"
                     else write_condition_set(tmp / "wav", a.condition, a.n, a.voice))
            hyps = transcribe_cli([p for p, _ in clips], a.model, tmp / "out", a.threads, a.dtype)
        except subprocess.CalledProcessError as e:  # espeak-ng (a voice it lacks) or asrgguf said why above
            sys.exit(f"demo_wer: {Path(e.cmd[0]).name} {' '.join(map(str, e.cmd[1:4]))} ... failed (exit {e.returncode})")
    refs = [t for _, t in clips]
    wrong = [(r, h) for r, h in zip(refs, hyps) if normalize(r) != normalize(h)]
    if a.show:
        for r, h in wrong:
            print(f"ref: {r}\nhyp: {h}\n")
    words = lambda texts: sum(len(normalize(t).split()) for t in texts)  # noqa: E731
    print(f"WER {100 * wer(refs, hyps):.2f} % over {len(refs)} sentences ({words(refs)} words), "
          f"{len(wrong)} sentences with errors; condition {a.condition}, voice {a.voice}, speed {SPEED}, model {a.model}, encoder {a.dtype}")
    kinds = speech.held_out_kinds(len(refs)) if a.condition != "isolated" else []
    for name in ("templates", "digit strings", "random words"):
        pairs = [(r, h) for r, h, k in zip(refs, hyps, kinds) if k == name]
        if pairs:
            r, h = map(list, zip(*pairs))
            print(f"  {name}: WER {100 * wer(r, h):.2f} % over {len(r)} sentences ({words(r)} words)")


if __name__ == "__main__":
    sys.exit(main())
