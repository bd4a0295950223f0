"""Cost of --vad: Silero VAD (asrgguf/vad.py) seconds per audio hour and peak RSS, with the CPU named.

The recording is espeak-ng speech (the held-out demo voice) with 0.5-4 s pauses and long silences, made
here and streamed in 100-ms blocks (never whole in memory). Each round times `iter_speech_pieces` (the
detector and the packing) over it; the medians are reported.

    flock /tmp/asrgguf-bench.lock python3 bench/vad.py --minutes 10 --rounds 3

Figures: docs/speakers.md (the cost of --vad).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from proc_stats import cpu_line  # noqa: E402


def material(tmp: Path):
    from support.speech_text import SENTENCES

    import support.demo_speech as speech
    from asrgguf import audio

    clips = []
    for i, s in enumerate(SENTENCES):
        p = tmp / f"s{i}.wav"
        speech.write_wav(p, s, speech.TEST_VOICE)
        clips.append(audio.load(str(p)))
    return clips


def stream(clips, seconds: float, seed: int = 0, block: int = 1600):
    rng = np.random.default_rng(seed)
    n, want = 0, int(seconds * 16000)
    while n < want:
        c = clips[int(rng.integers(len(clips)))]
        gap = np.zeros(int(rng.choice([0.5, 1.0, 2.0, 4.0, 12.0]) * 16000), np.float32)
        for part in (c, gap):
            for i in range(0, part.size, block):
                b = part[i:i + block][:max(0, want - n)]
                if b.size:
                    n += b.size
                    yield b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--piece-seconds", type=float, default=30.0)
    a = ap.parse_args()
    from asrgguf import vad

    with tempfile.TemporaryDirectory() as d:
        clips = material(Path(d))
    seconds = a.minutes * 60
    times, speech = [], 0
    for _ in range(a.rounds):
        t = time.perf_counter()
        pieces = list(p.spans for p in vad.iter_speech_pieces(stream(clips, seconds), a.piece_seconds))
        times.append(time.perf_counter() - t)
        speech = sum(s.length for spans in pieces for s in spans)
    med = statistics.median(times)
    print(json.dumps({
        "cpu": cpu_line(), "audio_seconds": seconds, "rounds": times, "median_s": round(med, 3),
        "vad_seconds_per_audio_hour": round(med / seconds * 3600, 1),
        "kept_fraction": round(speech / (seconds * 16000), 3), "pieces": len(pieces),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "onnxruntime": __import__("onnxruntime").__version__,
        "silero_vad": importlib.metadata.version("silero-vad"),
    }, indent=1))


if __name__ == "__main__":
    main()
