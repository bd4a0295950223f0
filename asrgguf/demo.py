"""The built-in demo model: a small Qwen3-ASR trained on espeak-ng English (tools/train_demo.py), and
its forced aligner (tools/train_demo_aligner.py).

`asrgguf run --model demo AUDIO` and `Transcriber.from_pretrained("demo")` load its packaged GGUF
pair; `--timestamps word` (and `asrgguf align --aligner demo`, `Aligner.load("demo")`) the aligner's
decoder with the same mmproj (the aligner kept the ASR model's encoder). docs/demo.md has their
training, test sets, word error rate and word-time error.
"""
from __future__ import annotations

from pathlib import Path

NAME = "demo"
DIR = Path(__file__).resolve().parent / "data" / "demo"
CHECKPOINT = DIR / "qwen3-asr-demo"                 # source tree only: what the GGUF pair is made from
DECODER = DIR / "qwen3-asr-demo-q8_0.gguf"
MMPROJ = DIR / "mmproj-qwen3-asr-demo-f16.gguf"
ALIGNER = DIR / "qwen3-aligner-demo-q8_0.gguf"    # its audio encoder is MMPROJ's
SAMPLE = DIR / "sample.wav"                         # espeak-ng, a sentence and a voice not trained on
SAMPLE_TEXT = DIR / "sample.txt"
