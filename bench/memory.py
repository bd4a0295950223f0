#!/usr/bin/env python3
"""Where the memory of one `asrgguf run` goes: every large allocation at the peaks, accounted for.

    python bench/memory.py --audio CLIP.wav --random 0.6b [--tokens 200] [--threads 2] [--json OUT]
    python bench/memory.py --audio CLIP.wav --gguf DEC.gguf --mmproj MMPROJ.gguf
    ASRGGUF_NATIVE_KEEP_SOURCE=1 python bench/memory.py ...   (the native backend keeps llama.cpp's pages: "before")

One process does what `asrgguf run --piece-seconds 1200 --bench-tokens N` does (Transcriber.from_gguf, then
transcribe), in two phases: load, and the run. For each phase it reports the peak resident set (VmHWM, reset
between the phases through /proc/self/clear_refs) and, from /proc/self/smaps sampled every 200 ms by a
thread, the breakdown of the largest sample: resident pages of the decoder GGUF's mapping, of the mmproj's
mapping, of other files (libraries), and anonymous memory. The anonymous part is then accounted for from
the objects themselves: the native backend's repacked weights (its counters), the encoder's parameters that
are not in the mmproj's map (torch tensors), the KV cache, llama.cpp's compute and output buffers (its own
log lines), glibc's heap (mallinfo2: what torch and everything else malloc'ed), and the encoder's first pass
alone on the same features (VmHWM over the resident set before it: its activations and the mmproj pages it
faults in).
The random checkpoints and GGUFs are bench/compare.py's (same work directory, made once).
Linux only (/proc).

Figures: docs/memory.md.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

MB = 2 ** 20


# --------------------------------------------------------------------------- /proc
def status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def reset_peak() -> None:
    """VmHWM := VmRSS (Linux clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


def smaps(files: dict[str, str]) -> dict:
    """Resident bytes by kind: each named file's mapping (realpath -> label), other files, anonymous; plus
    the address ranges of the named files' mappings."""
    out = {label: 0 for label in files.values()}
    out.update({"other files": 0, "anonymous": 0})
    ranges: dict[str, list[tuple[int, int]]] = {label: [] for label in files.values()}
    kind = None
    with open("/proc/self/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                parts = line.split(None, 5)
                path = parts[5].strip() if len(parts) > 5 else ""
                inode = int(parts[4])
                if path in files:
                    kind = files[path]
                    a, b = (int(x, 16) for x in parts[0].split("-"))
                    ranges[kind].append((a, b))
                elif inode != 0:
                    kind = "other files"
                else:
                    kind = "anonymous"   # [heap], [stack], anonymous maps (malloc's large blocks, ggml buffers)
            elif line.startswith("Rss:"):
                out[kind] += int(line.split()[1]) * 1024
    out["total"] = sum(v for k, v in out.items())
    out["ranges"] = ranges
    return out


class Sampler(threading.Thread):
    """Samples /proc/self/smaps every `period` s; keeps the sample with the largest total resident set."""

    def __init__(self, files: dict[str, str], period: float = 0.2):
        super().__init__(daemon=True)
        self.files, self.period = files, period
        self.best: dict | None = None
        self.n = 0
        self._stop_ev = threading.Event()

    def run(self):
        while not self._stop_ev.is_set():
            s = smaps(self.files)
            self.n += 1
            if self.best is None or s["total"] > self.best["total"]:
                self.best = s
            self._stop_ev.wait(self.period)

    def stop(self) -> dict:
        self._stop_ev.set()
        self.join()
        return self.best or {}


def mallinfo() -> dict:
    """glibc's heap: bytes in use in its arenas and in its own mmap'ed blocks, and free bytes it keeps."""
    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    m = libc.mallinfo2()
    return {"in_use_arenas": m.uordblks, "in_use_mmapped": m.hblkhd, "free_kept": m.fordblks}


# --------------------------------------------------------------------------- objects
def encoder_params(enc, mm_ranges: list[tuple[int, int]]) -> dict:
    """Bytes of the encoder's parameters and buffers: those read from the mmproj's map (f16 weights used in
    place: resident as mapped file pages) and those in torch's own memory."""
    in_map = own = 0
    seen = set()
    for t in list(enc.parameters()) + list(enc.buffers()):
        p = t.data_ptr()
        if p in seen:
            continue
        seen.add(p)
        n = t.numel() * t.element_size()
        if any(a <= p < b for a, b in mm_ranges):
            in_map += n
        else:
            own += n
    return {"in_mmproj_map": in_map, "torch_owned": own}


_SIZE_RE = re.compile(r"^\s*(\S+)\s+(compute|output) buffer size\s*=\s*([\d.]+) MiB")
_KV_RE = re.compile(r"llama_kv_cache: size =\s*([\d.]+) MiB")


def llama_buffers(lines: list[str]) -> dict:
    """llama.cpp's own report of its last context: KV cache size, compute and output buffers (MiB)."""
    out: dict = {}
    for line in lines:
        line = line.split(":", 1)[1] if line.startswith("llama_context") else line
        m = _KV_RE.search(line)
        if m:
            out = {"kv_cache": float(m.group(1)) * MB}   # a new context starts a new report
            continue
        m = _SIZE_RE.match(line)
        if m:
            out[f"{m.group(1)} {m.group(2)} buffer"] = float(m.group(3)) * MB
    return out


# --------------------------------------------------------------------------- main
def breakdown(sample: dict, labels: tuple[str, str]) -> dict:
    return {k: sample.get(k, 0) for k in (*labels, "other files", "anonymous", "total")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--random", choices=["tiny", "0.6b", "1.7b"], help="bench/compare.py's random checkpoint")
    src.add_argument("--gguf", type=Path, help="decoder GGUF (with --mmproj)")
    ap.add_argument("--mmproj", type=Path)
    ap.add_argument("--outtype", default="q8_0")
    ap.add_argument("--workdir", type=Path, default=REPO / "bench-out" / "compare")
    ap.add_argument("--tokens", type=int, default=200, help="tokens generated (end-of-turn ignored)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-native", action="store_true")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    if a.no_native:
        os.environ["ASRGGUF_NO_NATIVE"] = "1"
    if a.random:
        from compare import ensure_gguf, make_random_checkpoint

        a.workdir.mkdir(parents=True, exist_ok=True)
        ck = make_random_checkpoint(a.random, a.workdir.resolve())
        dec_path, mm_path = ensure_gguf(ck, a.outtype, a.workdir.resolve() / "gguf", a.threads)
    else:
        dec_path, mm_path = a.gguf, a.mmproj
    dec_path, mm_path = Path(dec_path).resolve(), Path(mm_path).resolve()
    files = {str(dec_path): "decoder GGUF map", str(mm_path): "mmproj map"}
    labels = ("decoder GGUF map", "mmproj map")

    start_rss = status_kb("VmRSS") * 1024
    import llama_cpp.llama_cpp  # noqa: F401  (as the CLI: llama.cpp's libraries, then torch)
    import torch

    from asrgguf import decoder as decoder_mod
    from asrgguf import native
    from asrgguf.transcribe import Transcriber

    torch.set_num_threads(a.threads)
    imports_rss = status_kb("VmRSS") * 1024

    reset_peak()
    s = Sampler(files)
    s.start()
    t0 = time.perf_counter()
    tr = Transcriber.from_gguf(dec_path, mm_path, device="cpu", threads=a.threads)
    load_s = time.perf_counter() - t0
    load_peak = s.stop()
    load_hwm = status_kb("VmHWM") * 1024
    after_load = smaps(files)
    nat = native.stats()

    # the encoder alone on the run's features: its activations' peak over what is resident before it
    from asrgguf import audio as audio_mod
    wav = audio_mod.load(a.audio)
    feats = tr.features(wav)
    before_enc = status_kb("VmRSS") * 1024
    reset_peak()
    with torch.inference_mode():
        emb = tr.encoder(feats)
    enc_peak = status_kb("VmHWM") * 1024 - before_enc
    n_emb = int(emb.shape[0])
    del emb, feats, wav

    reset_peak()
    s = Sampler(files)
    s.start()
    t0 = time.perf_counter()
    res = tr.transcribe(a.audio, piece_seconds=1200, bench_tokens=a.tokens)
    run_s = time.perf_counter() - t0
    run_peak = s.stop()
    run_hwm = status_kb("VmHWM") * 1024
    heap = mallinfo()
    llama = llama_buffers(list(decoder_mod._LOG_LINES))
    enc = encoder_params(tr.encoder, after_load["ranges"]["mmproj map"])
    d = tr.decoder

    report = {
        "decoder": str(dec_path), "mmproj": str(mm_path), "audio": a.audio, "threads": a.threads,
        "tokens": len(res.token_ids), "audio_positions": n_emb, "native": tr.model_info.get("native"),
        "keep_source": os.environ.get("ASRGGUF_NATIVE_KEEP_SOURCE", ""),
        "seconds": {"load": round(load_s, 2), "run": round(run_s, 2)},
        "rss": {"start": start_rss, "after imports": imports_rss, "peak of load (VmHWM)": load_hwm,
                "peak of run (VmHWM)": run_hwm, "end": status_kb("VmRSS") * 1024},
        "load peak sample": breakdown(load_peak, labels),
        "after load": breakdown(after_load, labels),
        "run peak sample": breakdown(run_peak, labels),
        "objects": {
            "native repacked weights": nat["bytes"],
            "native released source pages": nat.get("released_bytes", 0),
            "encoder params in the mmproj map": enc["in_mmproj_map"],
            "encoder params in torch memory": enc["torch_owned"],
            "encoder alone, first pass: VmHWM over before (activations + mmproj pages faulted in)": enc_peak,
            **{f"llama.cpp {k}": v for k, v in llama.items()},
            "glibc heap in use (arenas)": heap["in_use_arenas"],
            "glibc heap in use (mmapped blocks)": heap["in_use_mmapped"],
            "glibc heap free but kept": heap["free_kept"],
        },
        "context": {"n_ctx_per_seq": d.n_ctx, "n_seq": d.n_seq, "n_batch": d.n_batch},
    }
    print(render(report))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(report, indent=2))
    return 0


def render(r: dict) -> str:
    def mb(v):
        return f"{v / MB:8.1f}"
    out = [f"decoder {r['decoder']}", f"mmproj  {r['mmproj']}",
           f"audio positions {r['audio_positions']}, tokens {r['tokens']}, threads {r['threads']}, "
           f"native {json.dumps(r['native'])}, load {r['seconds']['load']} s, run {r['seconds']['run']} s", ""]
    out.append("resident set (MB)")
    out += [f"  {mb(v)}  {k}" for k, v in r["rss"].items()]
    for sec in ("load peak sample", "after load", "run peak sample"):
        out.append(f"{sec} (smaps, MB)")
        out += [f"  {mb(v)}  {k}" for k, v in r[sec].items()]
    out.append("objects (MB)")
    out += [f"  {mb(v)}  {k}" for k, v in r["objects"].items()]
    out.append(f"context: {r['context']}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
