"""How often the log-mel's clip-wide clamp makes a cached encoder window stale in a live stream.

Feeds audio in 100-ms blocks to `LiveLogMel`, caches each 800-frame window's clamp floor when it
completes (as `LiveEncoder` does) and counts, at the end of each utterance of `--seconds`, the
completed windows whose features the rising peak changed (those the exact final re-encodes).
No model needed. Usage: python bench/live_clamp_stats.py [--seconds 30] [--refresh 1] [wav ...]
(default: Debian's pocketsphinx LibriVox clips, joined with 0.7 s of silence).

Figures: docs/streaming.md (the clamp and stale windows).
"""
from __future__ import annotations

import argparse
import glob
import sys

import numpy as np


def main(argv=None):
    sys.path.insert(0, ".")
    from asrgguf import audio
    from asrgguf.live_features import LiveLogMel

    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="*")
    ap.add_argument("--seconds", type=float, default=30.0, help="utterance length (the stream is cut there)")
    ap.add_argument("--refresh", type=int, default=0, help="stale windows re-encoded per 100-ms step (LiveEncoder.step)")
    a = ap.parse_args(argv)
    files = a.files or sorted(glob.glob("/usr/share/pocketsphinx/test/data/librivox/*.wav"))
    parts = []
    for f in files:
        parts += [audio.load(f), np.zeros(11200, np.float32)]
    wav = np.concatenate(parts)
    wav = np.concatenate([wav] * max(1, int(np.ceil(a.seconds * 16000 * 2 / wav.size))))  # at least 2 utterances
    n_utt = int(a.seconds * 16000)
    total_windows = total_stale = rises_after_first = reencoded = 0
    for u0 in range(0, wav.size - n_utt + 1, n_utt):
        utt = wav[u0:u0 + n_utt]
        mel = LiveLogMel()
        floors, mins, last_peak = [], [], None
        for i in range(0, utt.size, 1600):
            mel.append(utt[i:i + 1600])
            while mel.n_stable >= 800 * (len(floors) + 1):
                w = len(floors)
                floors.append(LiveLogMel.floor(mel.peak))
                mins.append(float(mel.raw(800 * w, 800 * (w + 1)).min()))
            if floors and last_peak is not None and mel.peak > last_peak:
                rises_after_first += 1
            last_peak = mel.peak
            f = LiveLogMel.floor(mel.peak)
            for w in [w for w in range(len(floors)) if floors[w] != f and mins[w] < f][:a.refresh]:
                floors[w] = f          # re-encoded under the current floor
                reencoded += 1
        f = LiveLogMel.floor(mel.peak)
        stale = sum(1 for fl, mn in zip(floors, mins) if fl != f and mn < f)
        total_windows += len(floors)
        total_stale += stale
        print(f"utterance at {u0 / 16000:7.1f} s: {len(floors)} cached windows, {stale} stale at its end, "
              f"peak {mel.peak:.3f}")
    print(f"{total_stale} of {total_windows} cached windows stale at the final; "
          f"{rises_after_first} 100-ms steps raised the peak after the first window was cached; "
          f"{reencoded} windows re-encoded during the utterances (--refresh {a.refresh})")


if __name__ == "__main__":
    main()
