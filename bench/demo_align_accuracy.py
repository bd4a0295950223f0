#!/usr/bin/env python3
"""How close the demo aligner's word times are to espeak-ng's own word boundaries (issue 14).

The set: the first N held-out sentences of tests/support/demo_speech.py (neither the ASR model nor the
aligner trained on them) spoken by libespeak-ng with TEST_VOICE (a voice variant training never
used) at SPEED, which also reports where each word starts (its word events; a word ends at the
next word's start or at a pause: demo_speech.Espeak.synth_words). Each clip and its text go through
asrgguf's Aligner (q8_0 decoder, f16 mmproj) as `asrgguf align` runs it; every boundary espeak-ng
reports is compared with the aligner's (two words espeak-ng speaks as one have no inner boundary).

    python bench/demo_align_accuracy.py                  # the packaged demo aligner, 200 sentences
    python bench/demo_align_accuracy.py --aligner DIR_OR_GGUF --n 50 --show
    python bench/demo_align_accuracy.py --condition isolated     # words said alone, 0.5-1.5 s apart

--condition as bench/demo_wer.py (tests/support/demo_scenes.py): continuous, pauses, noise, isolated;
the word times of the pieces are espeak-ng's, shifted by where each piece was put.
--run MODEL measures the words of `asrgguf run --timestamps word` instead (the ASR model's text, then
the aligner; MODEL "demo" or a directory holding the demo GGUF pair): only clips whose transcript is the
spoken text (after demo_speech.normalize) can be compared, and their count is printed.

Figures: docs/demo.md ("The demo aligner", accuracy).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE.parent / "tests"))

import support.demo_scenes as scenes  # noqa: E402
import support.demo_speech as speech  # noqa: E402
from support.demo_speech import SPEED, boundary_errors as errors, espeak_word_times as reference  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="held-out sentences (the first N)")
    ap.add_argument("--aligner", default="demo", help="'demo' (the packaged aligner), a GGUF or a checkpoint directory")
    ap.add_argument("--voice", default=speech.TEST_VOICE)
    ap.add_argument("--speed", type=int, default=SPEED)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--condition", choices=scenes.CONDITIONS, default="continuous")
    ap.add_argument("--run", metavar="MODEL", help="through the ASR model's text (Transcriber, timestamps='word'): "
                    "'demo' or a directory with qwen3-asr-demo-q8_0.gguf and its mmproj")
    ap.add_argument("--show", action="store_true", help="print each sentence's words with both times")
    a = ap.parse_args(argv)
    if not 1 <= a.n <= speech.N_HELD_OUT:
        ap.error(f"--n: 1 to {speech.N_HELD_OUT} (the held-out sentences)")

    from asrgguf.align import Aligner

    if a.condition == "continuous":
        texts = speech.held_out(a.n)
        refs = reference(texts, a.voice, a.speed)
    else:
        made = scenes.test_set(a.condition, a.n, a.voice, a.speed)
        texts, refs = [t for _, t, _ in made], [(x, scenes.RATE, w) for x, _, w in made]
    al = Aligner.load(a.aligner, threads=a.threads)
    tr, compared = None, 0
    if a.run:
        from asrgguf import Transcriber

        tr = (Transcriber.from_pretrained("demo", threads=a.threads, aligner=al) if a.run == "demo" else
              Transcriber.from_gguf(Path(a.run) / "qwen3-asr-demo-q8_0.gguf", threads=a.threads, aligner=al))
    errs, seconds = [], 0.0
    try:
        for text, (wav, sr, spans) in zip(texts, refs):
            if tr is None:
                words = al.align((wav, sr), text, "English")
            else:
                from asrgguf.audio import prepare

                res = tr.transcribe_all(prepare(wav, sr), language="English", timestamps="word")
                if speech.normalize(res.text) != speech.normalize(text):
                    continue
                words = [w for seg in res.segments for w in seg.words]
                compared += 1
            e = errors(words, spans)
            errs += e
            seconds += len(wav) / sr
            if a.show:
                print(text)
                for w, (s0, s1) in zip(words, spans):
                    f = lambda x: "   -  " if x is None else f"{x:6.3f}"  # noqa: E731
                    print(f"  {w.text:>12}  aligner {w.start:6.3f} {w.end:6.3f}   espeak-ng {f(s0)} {f(s1)}")
    finally:
        (tr or al).close()   # the Transcriber closes its aligner
    if not errs:
        sys.exit(f"no clip to compare: none of the {len(texts)} was transcribed exactly (--run {a.run})")
    ms = np.array([x for _, x in errs]) * 1000
    starts = np.array([x for k, x in errs if k == "start"]) * 1000
    ends = np.array([x for k, x in errs if k == "end"]) * 1000
    print(f"{len(texts)} clips ({seconds:.0f} s), {len(ms)} boundaries; condition {a.condition}, voice {a.voice}, speed {a.speed}, "
          f"aligner {a.aligner}" + (f"; through run --model {a.run}: {compared} clips transcribed exactly, compared"
                                 if a.run else ""))
    print(f"mean absolute error {ms.mean():.1f} ms (starts {starts.mean():.1f}, ends {ends.mean():.1f}); "
          f"median {np.median(ms):.0f} ms; within 100 ms {100 * (ms <= 100).mean():.1f} %; "
          f"within 200 ms {100 * (ms <= 200).mean():.1f} %; largest {ms.max():.0f} ms")
    print(f"word onsets: mean {starts.mean():.1f} ms, largest {starts.max():.0f} ms, "
          f"within 200 ms {100 * (starts <= 200).mean():.1f} %")


if __name__ == "__main__":
    sys.exit(main())
