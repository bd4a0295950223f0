#!/usr/bin/env python3
"""Agreement of asrgguf's aligner with the official `Qwen3ForcedAligner` per decoder outtype.

Random-weight tiny aligner checkpoints of two shapes (as tests/test_align.py), espeak-ng clips of about
5 s and 20 s, English and Chinese transcripts. For each outtype: the share of <timestamp> positions whose
class equals the official one, the largest score error (in std of a row's scores), and after the
official repair the share of word times equal to the official ones and their mean absolute difference.

    python bench/align_parity.py [--outtypes f32,f16,q8_0,q4_k_m] [--work DIR]

`--checkpoint DIR` measures a trained aligner checkpoint instead (the demo aligner's, which
tools/train_demo_aligner.py writes to .cache/demo-aligner): the first 20 held-out demo sentences in
the held-out voice, English.

Figures: docs/align.md (the parity tables, random and trained aligners).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent))

ZH = "今天天气很好，我们去公园散步吧。Qwen3 说 3 点见！明天下雨的话就在家里看书。"
SHAPES = {"gqa-5000": dict(seed=3), "mha-400": dict(seed=4, mha=True, classify_num=400)}


def main(argv=None):
    import torch
    from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForcedAligner

    import support.demo_speech as demo_speech
    from support.random_checkpoint import write_checkpoint
    from support.reference import official_classes
    from support.speech_text import SENTENCES

    from asrgguf.align import Aligner, repair
    from asrgguf.audio import load
    from asrgguf.convert import quantize_checkpoint

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--outtypes", default="f32,f16,q8_0,q4_k_m")
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--checkpoint", type=Path, default=None, help="a trained aligner checkpoint (see above)")
    a = ap.parse_args(argv)
    work = a.work or Path(tempfile.mkdtemp(prefix="align-parity-"))
    work.mkdir(parents=True, exist_ok=True)
    clips = {"5s": work / "clip5.wav", "20s": work / "clip20.wav"}
    if not clips["5s"].exists():
        demo_speech.write_wav(clips["5s"], SENTENCES[0] + " " + SENTENCES[1][:30], "en", 170)
        demo_speech.write_wav(clips["20s"], " ".join(SENTENCES), "en", 165)
    cases = [(c, t, lang) for c in ("5s", "20s")
             for t, lang in (((" ".join(SENTENCES) if c == "20s" else SENTENCES[0]), "English"), (ZH, "Chinese"))]
    checkpoints = {shape: work / f"tiny-aligner-{shape}" for shape in SHAPES}
    if a.checkpoint:
        checkpoints = {a.checkpoint.name: a.checkpoint}
        cases = []
        for i, text in enumerate(demo_speech.held_out(20)):
            clips[i] = work / f"held-out-{i}.wav"
            demo_speech.write_wav(clips[i], text, demo_speech.TEST_VOICE, 160)
            cases.append((i, text, "English"))
    print("| checkpoint | outtype | classes equal | largest score error (std) | word times equal | "
          "mean abs. time diff (ms) |")
    print("|---|---|---|---|---|---|")
    for shape, ck in checkpoints.items():
        if not (ck / "config.json").exists():
            write_checkpoint(ck, size="tiny", aligner=True, **SHAPES[shape])
        off = Qwen3ForcedAligner.from_pretrained(str(ck), dtype=torch.float32, device_map="cpu")
        ref = {}
        for clip, text, lang in cases:
            wav = load(clips[clip])
            ref[(clip, lang)] = (wav, *official_classes(off, wav, text, lang))
        for outtype in a.outtypes.split(","):
            dec, mm = quantize_checkpoint(ck, outtype, work / "gguf" / ck.name, "f32" if outtype == "f32" else "f16",
                                          progress=False)
            al = Aligner.from_gguf(dec, mm, device="cpu", dtype="float32")
            n = same = 0
            worst = 0.0
            t_same = t_n = 0
            t_diff = []
            for (clip, lang), (wav, units, scores) in ref.items():
                ours = al.scores(wav, units)
                worst = max(worst, float((np.abs(ours - scores).max(1) / scores.std(1)).max()))
                c_ours, c_ref = ours.argmax(1), scores.argmax(1)
                n, same = n + len(c_ref), same + int((c_ours == c_ref).sum())
                t_ours = np.asarray(repair(c_ours * al.segment_ms))
                t_ref = np.asarray(repair(c_ref * al.segment_ms))
                t_n, t_same = t_n + len(t_ref), t_same + int((t_ours == t_ref).sum())
                t_diff += np.abs(t_ours - t_ref).tolist()
            al.close()
            print(f"| {shape} | {outtype} | {same}/{n} ({100 * same / n:.1f} %) | {worst:.3f} | "
                  f"{t_same}/{t_n} ({100 * t_same / t_n:.1f} %) | {np.mean(t_diff):.0f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
