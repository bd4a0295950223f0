"""Run in a subprocess by tests/test_memory.py (the native backend registers once per process): load a
decoder GGUF, prefill random embeddings, decode a few greedy steps, then report what is resident.

    python tests/support/memory_probe.py DECODER.gguf [--native on|off]
Prints one json line: the decoder mapping's resident bytes (/proc/self/smaps), VmRSS and VmHWM (bytes),
decoder.native_info and asrgguf.native.stats().
"""
from __future__ import annotations

import argparse
import json
import os
import re

import numpy as np

from asrgguf import native
from asrgguf.decoder import Decoder, DecoderOptions

_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def mapping_rss(path: str) -> int:
    """Resident bytes of every mapping of `path` in this process."""
    path, total, mine = os.path.realpath(path), 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            if _HEADER.match(line):
                head = line.split(None, 5)
                mine = len(head) > 5 and head[5].strip() == path
            elif mine and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


def status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("--native", choices=["on", "off"], default="on")
    a = ap.parse_args()
    d = Decoder(a.gguf, DecoderOptions(n_ctx=64, n_threads=2, native=a.native == "on"))
    after_load = mapping_rss(a.gguf)
    emb = np.random.default_rng(0).standard_normal((20, d.n_embd)).astype(np.float32)
    pos = d.eval_embeddings(emb, 0, logits_last=True)
    ids = []
    for _ in range(4):
        ids.append(int(np.argmax(d.logits())))
        pos = d.eval_tokens([ids[-1]], pos, logits_last=True)
    print(json.dumps({"map_rss_after_load": after_load, "map_rss_after_decode": mapping_rss(a.gguf),
                      "vm_rss": status("VmRSS"), "vm_hwm": status("VmHWM"), "ids": ids,
                      "native": d.native_info, "stats": native.stats()}))
    d.close()


if __name__ == "__main__":
    main()
