#!/usr/bin/env python3
"""Load test of `asrgguf serve`: N concurrent clients with the official `openai` client sending real speech.

For each --parallel value the tool starts its own server on 127.0.0.1 (a free port; nothing else is ever
called), sends every clip once, one at a time (the single-request results), then lets --clients threads,
each with its own OpenAI client, send --requests requests in all (clips in turn, verbose_json) and checks
each response against the single-request result of its clip (text and every piece's token ids). Reported:
requests/s, audio seconds per second, p50/p95 latency, errors, mismatches, and the server's peak RSS (the
kernel's VmHWM of the server process, read before it stops).

The clips are espeak-ng speech (tests/support/demo_speech.py sentences) of about 5 to 30 s, made once in --work.

    python bench/load_test.py --clients 16 --requests 200 --parallel 1 8 -- --gguf tiny.gguf --max-new-tokens 16
    python bench/load_test.py --clients 16 --requests 48 --parallel 1 4 -- \\
        --gguf /work/bench/Qwen3-ASR-0.6B/Qwen3-ASR-0.6B-q8_0.gguf --bench-tokens 16

Arguments after -- go to `asrgguf serve` (the model and its options); --host/--port/--parallel are set here.

Figures: docs/serve.md ("Load"; its JSON output: docs/serve_load_*.json).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

TARGETS = (5, 8, 11, 14, 17, 20, 24, 28)   # clip lengths (s), about


def make_clips(work: Path, targets=TARGETS) -> list[tuple[Path, float]]:
    import soundfile as sf

    import support.demo_speech as speech

    work.mkdir(parents=True, exist_ok=True)
    out = []
    sents = speech.sentences(7, 200)
    k = 0
    for i, t in enumerate(targets):
        path = work / f"clip{i:02d}-{t}s.wav"
        if not path.exists():
            text = ""
            while True:
                text = (text + " " + sents[k % len(sents)]).strip()
                k += 1
                tmp = path.with_suffix(".tmp.wav")
                speech.write_wav(tmp, text, "en", 165)
                if sf.info(str(tmp)).duration >= t:
                    tmp.replace(path)
                    break
        out.append((path, sf.info(str(path)).duration))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return platform.processor()
    model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), [])
    keep = [f for f in flags if f.startswith(("avx", "fma", "f16c", "amx", "sse4", "neon", "sve"))]
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(keep)}"


class Server:
    def __init__(self, serve_args: list[str], parallel: int, log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "asrgguf.cli", "serve", *serve_args, "--host", "127.0.0.1",
                                      "--port", str(self.port), "--parallel", str(parallel), "--log-level", "warning"],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)

    def wait_ready(self, timeout: float) -> None:
        import httpx

        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise SystemExit(f"server not ready in {timeout} s")

    def totals(self) -> dict:
        import httpx

        try:
            return httpx.get(self.url + "/health", timeout=10).json().get("totals", {})
        except Exception:  # noqa: BLE001 - only a report
            return {}

    def stop(self) -> float:
        hwm = vm_hwm_mb(self.proc.pid)
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()
        return hwm


def one(client, path: Path) -> tuple[str, list[list[int]]]:
    with open(path, "rb") as f:
        v = client.audio.transcriptions.create(model="qwen3-asr", file=f, response_format="verbose_json")
    return v.text, [list(s.tokens) for s in (v.segments or [])]


def run_config(args, parallel: int, clips, work: Path) -> dict:
    from openai import OpenAI

    srv = Server(args.serve_args, parallel, work / f"server-p{parallel}.log")
    try:
        srv.wait_ready(args.load_timeout)

        def client():
            return OpenAI(base_url=srv.url + "/v1", api_key="none", max_retries=0, timeout=args.request_timeout)
        c = client()
        t0 = time.perf_counter()
        alone = [one(c, p) for p, _ in clips]
        alone_s = time.perf_counter() - t0

        lock = threading.Lock()
        counter = iter(range(args.requests))
        lat, errors, mismatches, audio = [], [], 0, 0.0
        deadline = time.monotonic() + args.max_seconds

        def worker():
            nonlocal mismatches, audio
            cl = client()
            while time.monotonic() < deadline:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                path, dur = clips[i % len(clips)]
                t = time.perf_counter()
                try:
                    got = one(cl, path)
                except Exception as e:  # noqa: BLE001 - counted and reported
                    with lock:
                        errors.append(f"{type(e).__name__}: {str(e)[:200]}")
                    continue
                dt = time.perf_counter() - t
                with lock:
                    lat.append(dt)
                    audio += dur
                    if got != alone[i % len(clips)]:
                        mismatches += 1

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(args.clients)]
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(args.max_seconds + args.request_timeout)
        wall = time.perf_counter() - t0
        load1 = os.getloadavg()[0]
        totals = srv.totals()
    finally:
        hwm = srv.stop()
    lat.sort()

    def pct(q):
        return lat[min(len(lat) - 1, int(round(q * (len(lat) - 1))))] if lat else float("nan")
    return {"parallel": parallel, "clients": args.clients, "requests": len(lat) + len(errors), "ok": len(lat),
            "errors": len(errors), "error_examples": errors[:3], "mismatches": mismatches,
            "wall_s": round(wall, 2), "requests_per_s": round(len(lat) / wall, 3),
            "audio_s_per_s": round(audio / wall, 2), "p50_s": round(pct(0.5), 2), "p95_s": round(pct(0.95), 2),
            "mean_s": round(statistics.fmean(lat), 2) if lat else None, "server_peak_rss_mb": round(hwm),
            "single_pass_s": round(alone_s, 2), "loadavg_1min_before_after": [round(load0, 1), round(load1, 1)], "server_totals": totals,
            "alone": alone}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=200, help="requests in all, per --parallel value")
    ap.add_argument("--parallel", type=int, nargs="+", default=[1, 8], help="server --parallel values to compare")
    ap.add_argument("--clips", type=int, default=len(TARGETS), help="use the N shortest clips (1..8)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "asrgguf-load")
    ap.add_argument("--max-seconds", type=float, default=1800, help="no new requests after this long")
    ap.add_argument("--request-timeout", type=float, default=900)
    ap.add_argument("--load-timeout", type=float, default=600)
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("serve_args", nargs=argparse.REMAINDER, help="-- then `asrgguf serve` arguments")
    args = ap.parse_args()
    if args.serve_args and args.serve_args[0] == "--":
        args.serve_args = args.serve_args[1:]
    if not args.serve_args:
        ap.error("give the model after --, e.g. -- --model demo")
    if not (1 <= args.clients <= 256 and 1 <= args.requests <= 10000):
        ap.error("--clients 1..256 and --requests 1..10000")
    clips = make_clips(args.work, TARGETS[:max(1, min(args.clips, len(TARGETS)))])
    print(f"machine: {machine()}", flush=True)
    print(f"clips: {len(clips)} ({', '.join(f'{d:.1f}' for _, d in clips)} s), {min(d for _, d in clips):.1f}-{max(d for _, d in clips):.1f} s, "
          f"{sum(d for _, d in clips):.0f} s in all", flush=True)
    print(f"serve args: {' '.join(args.serve_args)}", flush=True)
    results = []
    for p in args.parallel:
        r = run_config(args, p, clips, args.work)
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "alone"}), flush=True)
    same = all(r["alone"] == results[0]["alone"] for r in results)
    print(f"single-request results equal across --parallel values: {same}")
    print("\n| --parallel | clients | requests | errors | mismatches | wall s | requests/s | audio s/s | p50 s | p95 s "
          "| server peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['parallel']} | {r['clients']} | {r['requests']} | {r['errors']} | {r['mismatches']} | "
              f"{r['wall_s']} | {r['requests_per_s']} | {r['audio_s_per_s']} | {r['p50_s']} | {r['p95_s']} | "
              f"{r['server_peak_rss_mb']} |")
    if args.out:
        args.out.write_text(json.dumps({"machine": machine(), "serve_args": args.serve_args, "clients": args.clients,
                                        "single_equal_across_parallel": same,
                                        "results": [{k: v for k, v in r.items() if k != "alone"} for r in results]},
                                       indent=1) + "\n")


if __name__ == "__main__":
    main()
