#!/usr/bin/env python3
"""Script form of `asrgguf quantize`: a Qwen3-ASR checkpoint -> decoder GGUF + mmproj GGUF.

    python tools/quantize.py MODEL_DIR [--outtype q8_0] [--mmproj-type f16] [-o OUTDIR]
"""
import sys

from asrgguf.cli import main

if __name__ == "__main__":
    sys.exit(main(["quantize", *sys.argv[1:]]))
