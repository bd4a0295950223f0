"""What `--vad` saves on a sparse recording: wall time with and without VAD, and the demo model's texts.

The recording: speech parts (each two or three demo sentences spoken continuously by espeak-ng, voice
en-us+f3) between stretches of silence, pink noise (peak 0.02) and silence (a quarter, a half, a quarter),
non-speech being `--sparse` (80 %) of it.

Speed (`--gguf`, e.g. the 0.6B shape with random real-size weights made by `bench/compare.py --random
0.6b`, q8_0 decoder + f16 mmproj): one engine loaded once, the whole recording transcribed with `vad=True`
and without, alternately, `--rounds` times; every piece generates exactly `--tokens` tokens (end-of-turn
ignored, as bench/compare.py does with random weights), so both sides pay the same per piece and the
difference is the audio they encode and prefill (and the pieces they make). Wall time per run and the
median ratio.

Demo check (unless --skip-demo): the demo model's text of each speech part transcribed alone without VAD
(the clip as espeak-ng made it, trimmed; and the part cut from the recording with 0.4 s of the silence
around it, the VAD's padding), against its text from the whole recording with VAD (one region a piece);
and the text without VAD on the whole recording.

    flock /tmp/asrgguf-bench.lock python3 bench/vad_speed.py --gguf WORKDIR/gguf/random-0.6b-q8_0.gguf \
        --mmproj WORKDIR/gguf/mmproj-random-0.6b-f16.gguf --threads 2 --tokens 32 --rounds 3

Figures: docs/speakers.md ("Speed and text on a recording that is 80 % silence and noise").
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import support.demo_speech as speech  # noqa: E402
from support.demo_speech import pink  # noqa: E402
from proc_stats import cpu_line  # noqa: E402

SR = 16000




def recording(parts: int, sparse: float, seed: int, tmp: Path):
    """(wav, [speech part wavs], [(start, end)]): parts of speech with silence and noise around them."""
    from asrgguf import audio

    rng = np.random.default_rng(seed)
    texts = iter(speech.sentences(2000 + seed, 3 * parts))
    clips = []
    for i in range(parts):
        p = tmp / f"part{i}.wav"
        text = " ".join(next(texts) for _ in range(2 + i % 2))
        subprocess.run(["espeak-ng", "-v", speech.TEST_VOICE, "-s", "165", "-w", str(p), text], check=True)
        c = audio.load(str(p))
        idx = np.flatnonzero(np.abs(c) > 0.01)
        clips.append(c[idx[0]:idx[-1] + 1])
    speech_n = sum(c.size for c in clips)
    gap = int(speech_n * sparse / (1 - sparse) / (parts + 1))   # non-speech before, between and after
    out, where, n = [], [], 0
    for i in range(parts + 1):   # silence, noise, silence (the demo, trained without noise, garbles speech
        q = gap // 4             # that touches noise: docs/speakers.md)
        out += [np.zeros(q, np.float32), pink(gap - 2 * q, rng) * 0.02, np.zeros(q, np.float32)]
        n += gap
        if i < parts:
            out.append(clips[i])
            where.append((n / SR, (n + clips[i].size) / SR))
            n += clips[i].size
    return np.concatenate(out), clips, where


def demo_check(wav, clips, where, threads: int) -> dict:
    """The demo model's text of each speech part alone (no VAD) against the whole recording with VAD."""
    from asrgguf import Transcriber

    pad = int(0.4 * SR)   # the VAD's padding (speech_pad_ms 400): the part with the silence around it
    padded = [wav[max(0, int(a * SR) - pad):int(b * SR) + pad] for a, b in where]
    with Transcriber.from_pretrained("demo", threads=threads) as tr:
        alone = [tr.transcribe_all(c, language="English").text for c in clips]
        alone_padded = [tr.transcribe_all(c, language="English").text for c in padded]
        with_vad = tr.transcribe_all(wav, language="English", vad=True)
        without = tr.transcribe_all(wav, language="English")
    got = [s.text for s in with_vad.segments]
    return {"alone": alone, "alone_padded": alone_padded, "with_vad": got, "equal": got == alone,
            "equal_parts": sum(x == y for x, y in zip(got, alone)), "parts": len(alone),
            "equal_parts_padded": sum(x == y for x, y in zip(got, alone_padded)),
            "vad_segments": [[round(s.start, 2), round(s.end, 2)] for s in with_vad.segments],
            "speech_parts": [[round(x, 2), round(y, 2)] for x, y in where], "without_vad": without.text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", help="decoder GGUF for the speed runs (none: only the demo check)")
    ap.add_argument("--mmproj")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=32, help="tokens generated per piece in the speed runs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--parts", type=int, default=4)
    ap.add_argument("--sparse", type=float, default=0.8, help="share of the recording that is not speech")
    ap.add_argument("--skip-demo", action="store_true", help="only the speed runs")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    from asrgguf import Transcriber

    out: dict = {"cpu": cpu_line(), "threads": a.threads}
    with tempfile.TemporaryDirectory() as tmp:
        wav, clips, where = recording(a.parts, a.sparse, 0, Path(tmp))
    out["recording_s"] = round(wav.size / SR, 1)
    out["speech_s"] = round(sum(c.size for c in clips) / SR, 1)
    print(json.dumps({k: out[k] for k in ("recording_s", "speech_s")}), flush=True)

    if not a.skip_demo:
        out["demo"] = demo_check(wav, clips, where, a.threads)
        print(json.dumps(out["demo"], indent=1), flush=True)

    if a.gguf:
        runs = {"vad": [], "no_vad": []}
        detail = {}
        with Transcriber.from_gguf(a.gguf, a.mmproj, threads=a.threads) as tr:
            tr.transcribe_all(clips[0], language="English", bench_tokens=a.tokens)   # warm-up
            for r in range(a.rounds):
                for name in (("vad", "no_vad") if r % 2 == 0 else ("no_vad", "vad")):
                    t0 = time.perf_counter()
                    res = tr.transcribe_all(wav, language="English", bench_tokens=a.tokens,
                                            vad=name == "vad")
                    dt = time.perf_counter() - t0
                    runs[name].append(round(dt, 2))
                    tm = res.timings
                    detail[name] = {"pieces": tm["pieces"], "encoder_s": round(tm["encoder"], 2),
                                    "prefill_s": round(tm["prefill"], 2), "decode_s": round(tm["decode"], 2),
                                    "generated_tokens": tm["generated_tokens"]}
                    print(json.dumps({"round": r, "run": name, "wall_s": round(dt, 2), **detail[name]}), flush=True)
        med = {k: statistics.median(v) for k, v in runs.items()}
        out["speed"] = {"gguf": a.gguf, "tokens_per_piece": a.tokens, "runs": runs, "median_s": med,
                        "last_run": detail, "ratio_no_vad_over_vad": round(med["no_vad"] / med["vad"], 2)}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps({k: v for k, v in out.items() if k != "demo"}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
