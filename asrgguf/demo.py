"""The built-in demo model: a small Qwen3-ASR trained on espeak-ng English (tools/train_demo.py).

`asrgguf run --model demo AUDIO` and `Transcriber.from_pretrained("demo")` load its packaged GGUF
pair; docs/demo.md has its training, test set and word error rate.
"""
from __future__ import annotations

from pathlib import Path

NAME = "demo"
DIR = Path(__file__).resolve().parent / "data" / "demo"
CHECKPOINT = DIR / "qwen3-asr-demo"                 # source tree only: what the GGUF pair is made from
DECODER = DIR / "qwen3-asr-demo-q8_0.gguf"
MMPROJ = DIR / "mmproj-qwen3-asr-demo-f16.gguf"
SAMPLE = DIR / "sample.wav"                         # espeak-ng, a sentence and a voice not trained on
SAMPLE_TEXT = DIR / "sample.txt"
