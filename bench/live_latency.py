#!/usr/bin/env python3
"""Live transcription's latency and cost: `Transcriber.stream()` at the real 0.6B shape on random weights.

    flock /tmp/asrgguf-bench.lock python bench/live_latency.py --random 0.6b --threads 2 --minutes 10 \\
        --streams 1,2,3,4

The audio: espeak-ng speech (tests/support/demo_speech.py's sentence generator, voice en-us, 16 kHz), one to three
sentences an utterance, 0.8 to 2.0 s of silence between utterances, fed to the stream in 100-ms blocks
paced in real time by this thread while an engine thread pumps the one scheduler (as the server does:
`Stream(wait=False)`, events through `on_event`).

Random weights say nothing about the text, and a random model's decode length would be arbitrary, so
every decode generates a fixed number of tokens: `--tokens-per-second` (3, about what real speech gives)
times the seconds of audio of the piece (partials: the utterance so far; finals: the utterance), end of
turn ignored, as bench/compare.py's token budget does. The cost is therefore that of real speech of the
same length, whatever the text.

Measured:
* final latency: from the moment the block holding an utterance's last speech sample was fed to the final
  event (it includes the detector's silence wait, 500 ms by default);
* first partial: from the block holding the utterance's first speech sample to its first partial event;
* engine seconds per audio second (the engine thread's time inside pumps that did work) in the first and
  the last minute of a `--minutes` stream, with the scheduler's encode / prefill / decode split;
* concurrent streams (`--streams`): N streams of `--concurrent-seconds` each, fed together in real time;
  N holds when they do not fall behind: the finals of each stream's last third arrive at most 1 s later (median)
  than those of its first third, none is missing, and the last final comes within `--behind` seconds (6) of the
  audio's end (a latency above the goals is reported, not counted as behind). One at a time
  (no batching) can hold at most floor(1 / (engine seconds per audio second of one stream)).

Make the GGUF pair once (`--random 0.6b`: tests/support/random_checkpoint.py + `asrgguf quantize --outtype q8_0`
into --workdir) or give `--decoder/--mmproj`. Prints a Markdown table with the CPU model and flags and
writes the raw figures as JSON (--json).

Figures: docs/streaming.md ("Measured": latency and cost).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))

import support.demo_speech as speech  # noqa: E402
from proc_stats import cpu_line  # noqa: E402

SR = 16000
BLOCK = SR // 10


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- material
def make_stream(seconds: float, seed: int, voice: str = "en-us") -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(16 kHz samples, [(speech start, speech end) per utterance]) of about `seconds`."""
    from asrgguf.audio import prepare

    rng = np.random.default_rng(seed)
    es = speech.Espeak()
    texts = iter(speech.sentences(seed + 1000, 100000))
    parts, utts, n = [], [], 0
    lead = int(0.5 * SR)
    parts.append(np.zeros(lead, np.float32))
    n += lead
    while n < seconds * SR:
        k = int(rng.integers(1, 4))
        wav, _, end = es.synth(" ".join(next(texts) for _ in range(k)), voice, 165)
        x = prepare(wav[:end].astype(np.float32) / 32768.0, es.sample_rate)
        nz = np.nonzero(np.abs(x) > 1e-3)[0]
        x = x[nz[0]:nz[-1] + 1] if nz.size else x
        utts.append((n, n + x.size))
        parts.append(x)
        n += x.size
        gap = int(rng.uniform(0.8, 2.0) * SR)
        parts.append(np.zeros(gap, np.float32))
        n += gap
    return np.concatenate(parts), utts


def ensure_pair(size: str, workdir: Path) -> tuple[Path, Path]:
    ck = workdir / f"random-{size}"
    gg = workdir / "gguf"
    dec, mm = gg / f"random-{size}-q8_0.gguf", gg / f"mmproj-random-{size}-f16.gguf"
    if dec.exists() and mm.exists():
        return dec, mm
    if not (ck / "config.json").exists():
        log(f"live_latency: random checkpoint {size} -> {ck}")
        subprocess.run([sys.executable, str(REPO / "tests" / "support" / "random_checkpoint.py"), str(ck),
                        "--size", size],
                       check=True)
    gg.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "asrgguf.cli", "quantize", str(ck), "--outtype", "q8_0",
                    "--mmproj-type", "f16", "-o", str(gg), "--quiet"], check=True, cwd=REPO)
    return dec, mm


# --------------------------------------------------------------------------- the engine
class Engine:
    """The Transcriber, its fixed decode length, and an engine thread that pumps the scheduler and
    records the time it was busy."""

    def __init__(self, decoder: Path, mmproj: Path, threads: int, tokens_per_second: float):
        from asrgguf import Transcriber

        self.tr = Transcriber.from_gguf(decoder, mmproj, threads=threads)
        orig = self.tr.make_job
        tps = tokens_per_second

        def make_job(piece, opts, timings=None, tag=None):
            job = orig(piece, opts, timings, tag)
            job.max_new_tokens = max(1, math.ceil(tps * piece.length / SR))
            job.exact_tokens = True   # random weights: the length real speech would give, not the model's
            return job
        self.tr.make_job = make_job
        self.busy: list[tuple[float, float]] = []
        self.snaps: list[tuple[float, dict]] = []
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop = False
        self.busy, self.snaps = [], []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._thread.join()

    def _run(self) -> None:
        sched = self.tr.scheduler
        while not self._stop:
            t0 = time.perf_counter()
            did = sched.pump()
            if did:
                self.busy.append((t0, time.perf_counter()))
            else:
                time.sleep(0.002)

    def busy_in(self, a: float, b: float) -> float:
        return sum(max(0.0, min(e, b) - max(s, a)) for s, e in self.busy)

    def stats(self) -> dict:
        return dict(self.tr.scheduler.stats)


def run_streams(eng: Engine, streams: list[tuple[np.ndarray, list]], opts: dict, snap_every: float = 0.0):
    """Feed every stream in real time (100-ms blocks, all streams each tick); returns per stream the events
    [(wall, Event)], the wall time each block was fed, and the start time."""
    n = len(streams)
    events: list[list] = [[] for _ in range(n)]
    lock = threading.Lock()

    def sink(i):
        def on_event(e):
            with lock:
                events[i].append((time.perf_counter(), e))
        return on_event
    ss = [eng.tr.stream(wait=False, on_event=sink(i), **opts) for i in range(n)]
    n_blocks = max(math.ceil(x.size / BLOCK) for x, _ in streams)
    fed = np.zeros(n_blocks)
    eng.start()
    t0 = time.perf_counter()
    next_snap = snap_every
    for k in range(n_blocks):
        target = t0 + k * BLOCK / SR
        now = time.perf_counter()
        if target > now:
            time.sleep(target - now)
        fed[k] = time.perf_counter()
        for s, (x, _) in zip(ss, streams):
            blk = x[k * BLOCK:(k + 1) * BLOCK]
            if blk.size:
                s.feed(blk)
        if snap_every and (k + 1) * BLOCK / SR >= next_snap:
            eng.snaps.append((time.perf_counter(), eng.stats()))
            next_snap += snap_every
    t_end = time.perf_counter()
    for s in ss:
        s.finish()   # wait=False: the engine thread drains
    deadline = time.perf_counter() + 120
    while time.perf_counter() < deadline and not all(s._final_req.finished for s in ss):
        time.sleep(0.01)
    t_drain = time.perf_counter() - t_end
    eng.stop()
    for s in ss:
        s.close()
    return events, fed, t0, t_drain


def latencies(events, fed, utts) -> dict:
    """Final and first-partial latencies per ground-truth utterance."""
    finals = [(w, e) for w, e in events if e.type == "final"]
    stopped = {e.utterance: w for w, e in events if e.type == "speech_stopped"}
    first_partial: dict[int, float] = {}
    for w, e in events:
        if e.type == "partial" and e.utterance not in first_partial:
            first_partial[e.utterance] = w
    fin, part, missing, after_stop = [], [], 0, []
    for s0, s1 in utts:
        best, ov = None, 0.0
        for w, e in finals:
            o = min(e.end * SR, s1) - max(e.start * SR, s0)
            if o > ov:
                best, ov = (w, e), o
        if best is None:
            missing += 1
            continue
        w, e = best
        fin.append(w - fed[min((s1 - 1) // BLOCK, len(fed) - 1)])
        if e.utterance in stopped:
            after_stop.append(w - stopped[e.utterance])
        if e.utterance in first_partial:
            part.append(first_partial[e.utterance] - fed[s0 // BLOCK])
    return {"final": fin, "first_partial": part, "missing": missing, "utterances": len(utts),
            "final_after_endpoint": after_stop,
            "finals": len(finals)}


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, q):
    return float(np.percentile(xs, q)) if xs else float("nan")


def variant(opts: dict, spec: str) -> dict:
    """`opts` changed as `spec` says: 'MODE[:spec][:nokv][:stepS]' (see --compare)."""
    mode, *flags = spec.split(":")
    out = dict(opts, partials=mode, speculative_final=False, keep_kv=True)
    for f in flags:
        if f == "spec":
            out["speculative_final"] = True
        elif f == "nokv":
            out["keep_kv"] = False
        elif f.startswith("step"):
            out["step_seconds"] = float(f[4:])
        else:
            raise SystemExit(f"live_latency: unknown setting {f!r} in --compare {spec!r}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--random", default="0.6b", help="random checkpoint size (tests/support/random_checkpoint.py)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/asrgguf-live-bench"))
    ap.add_argument("--decoder", type=Path)
    ap.add_argument("--mmproj", type=Path)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens-per-second", type=float, default=3.0)
    ap.add_argument("--minutes", type=float, default=10.0, help="the single stream's length")
    ap.add_argument("--streams", default="1,2,3,4", help="concurrent stream counts to try ('' skips)")
    ap.add_argument("--concurrent-seconds", type=float, default=45.0)
    ap.add_argument("--behind", type=float, default=6.0,
                    help="N streams hold when the finals of their last third come at most 1 s later (median) than "
                         "those of their first third and the last final within this many seconds of the end")
    ap.add_argument("--step-seconds", type=float, default=1.0)
    ap.add_argument("--partials", default="draft", help="Stream(partials=...): draft, rollback or full")
    ap.add_argument("--no-draft-final", action="store_true",
                    help="finals decoded without the last partial as a draft")
    ap.add_argument("--no-keep-kv", action="store_true",
                    help="no kept sequence: every step prefills its whole prompt (Stream(keep_kv=False))")
    ap.add_argument("--speculative-final", action="store_true",
                    help="decode the utterance when the detector's silence begins (Stream(speculative_final=True))")
    ap.add_argument("--compare", default="",
                    help="settings to compare first, alternately: a partial mode (draft, rollback, full, off) with "
                         "optional ':spec' (speculative final), ':nokv' (no kept sequence), ':stepS' (step S s), "
                         "e.g. draft,draft:spec,draft:nokv,off:spec")
    ap.add_argument("--compare-minutes", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=2, help="rounds of --compare")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)

    dec, mm = (a.decoder, a.mmproj) if a.decoder else ensure_pair(a.random, a.workdir)
    log(f"live_latency: {dec.name} + {mm.name}, {a.threads} threads, {cpu_line()}")
    eng = Engine(dec, mm, a.threads, a.tokens_per_second)
    opts = {"step_seconds": a.step_seconds, "partials": a.partials, "draft_final": not a.no_draft_final,
            "keep_kv": not a.no_keep_kv, "speculative_final": a.speculative_final}
    out: dict = {"cpu": cpu_line(), "decoder": str(dec), "threads": a.threads,
                 "tokens_per_second": a.tokens_per_second, "options": opts}

    # warm-up: one short stream (first calls allocate the context and load the VAD)
    x, u = make_stream(6, seed=99)
    run_streams(eng, [(x[:x.size // 4 * 4], u)], opts)

    if a.compare:
        x, utts = make_stream(a.compare_minutes * 60, seed=5)
        rows: dict = {}
        for rep in range(a.reps):
            for mode in a.compare.split(","):
                st0 = eng.stats()
                events, fed, t0, _ = run_streams(eng, [(x, utts)], variant(opts, mode))
                st1 = eng.stats()
                la = latencies(events[0], fed, utts)
                r = rows.setdefault(mode, {"final": [], "first_partial": [], "after_endpoint": [], "busy": [],
                                           "draft": [0, 0]})
                r["final"] += la["final"]
                r["first_partial"] += la["first_partial"]
                r["after_endpoint"] += la["final_after_endpoint"]
                r["busy"].append(eng.busy_in(t0, t0 + x.size / SR) / (x.size / SR))
                r["draft"][0] += st1.get("draft_accepted", 0) - st0.get("draft_accepted", 0)
                r["draft"][1] += st1.get("draft_tokens", 0) - st0.get("draft_tokens", 0)
                log(f"live_latency: round {rep + 1} {mode}: final median {med(la['final']):.2f} s, busy "
                    f"{r['busy'][-1]:.3f}")
        out["compare"] = rows
        print(f"Partial modes, {x.size / SR:.0f}-s stream ({len(utts)} utterances) x {a.reps} rounds, alternating; "
              f"{Path(dec).name}, {a.threads} threads, {a.tokens_per_second:g} tokens per audio second; "
              f"CPU: {cpu_line()}\n")
        print("| setting | final after speech end (median) | final after the endpoint (median) | "
              "first partial (median) | engine s per audio s (median of rounds) | draft tokens kept |")
        print("|---|---:|---:|---:|---:|---:|")
        for mode, r in rows.items():
            kept = f"{r['draft'][0]} of {r['draft'][1]}" if r["draft"][1] else "-"
            print(f"| {mode} | {med(r['final']):.2f} s | {med(r['after_endpoint']):.2f} s | "
                  f"{med(r['first_partial']):.2f} s | {med(r['busy']):.3f} | {kept} |")
        print(f"load average at the end (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    if a.minutes <= 0:
        if a.json:
            a.json.write_text(json.dumps(out, indent=1))
        return

    # one long stream
    x, utts = make_stream(a.minutes * 60, seed=1)
    log(f"live_latency: one stream of {x.size / SR:.0f} s, {len(utts)} utterances, real time")
    events, fed, t0, drain = run_streams(eng, [(x, utts)], opts, snap_every=60.0)
    lat = latencies(events[0], fed, utts)
    dur = x.size / SR
    first = eng.busy_in(t0, t0 + 60) / 60
    last = eng.busy_in(t0 + dur - 60, t0 + dur) / 60
    splits = []
    prev = {"encode_s": 0.0, "prefill_s": 0.0, "decode_s": 0.0}
    for _, st in eng.snaps:
        splits.append({k: round((st[k] - prev.get(k, 0.0)) / 60, 4) for k in ("encode_s", "prefill_s", "decode_s")})
        prev = st
    out["single"] = {"audio_s": dur, "utterances": len(utts), "finals": lat["finals"], "missing": lat["missing"],
                     "final_latency": lat["final"], "first_partial_latency": lat["first_partial"],
                     "after_endpoint": lat["final_after_endpoint"],
                     "engine_per_audio_first_min": first, "engine_per_audio_last_min": last,
                     "engine_per_audio_all": eng.busy_in(t0, t0 + dur) / dur,
                     "per_minute_split": splits, "drain_s": drain}
    log(f"live_latency: finals median {med(lat['final']):.2f} s, first partials median "
        f"{med(lat['first_partial']):.2f} s, engine/audio first {first:.3f} last {last:.3f}")

    # concurrent streams
    conc = []
    counts = [int(c) for c in a.streams.split(",") if c.strip()]
    for n in counts:
        ss = [make_stream(a.concurrent_seconds, seed=10 + i) for i in range(n)]
        events, fed, t0, drain = run_streams(eng, ss, opts)
        fins, parts, miss = [], [], 0
        early, late = [], []   # each stream's first and last third of finals: a backlog that grows shows there
        for (xx, uu), ev in zip(ss, events):
            la = latencies(ev, fed, uu)
            fins += la["final"]
            parts += la["first_partial"]
            miss += la["missing"]
            k = max(1, len(la["final"]) // 3)
            early += la["final"][:k]
            late += la["final"][-k:]
        dur = max(xx.size for xx, _ in ss) / SR
        holds = bool(bool(fins) and miss == 0 and drain <= a.behind and med(late) <= med(early) + 1.0)
        conc.append({"streams": n, "final_median": med(fins), "first_third_median": med(early),
                     "last_third_median": med(late), "final_max": max(fins) if fins else None,
                     "first_partial_median": med(parts), "missing": miss, "drain_s": drain,
                     "engine_busy": eng.busy_in(t0, t0 + dur) / dur, "holds": holds})
        log(f"live_latency: {n} streams: finals median {med(fins):.2f} max {max(fins) if fins else 0:.2f} s, "
            f"busy {conc[-1]['engine_busy']:.2f}, {'holds' if holds else 'BEHIND'}")
        if not holds:
            break
    out["concurrent"] = conc

    s = out["single"]
    print(f"Live stream, {Path(dec).name}, {a.threads} threads, {a.tokens_per_second:g} tokens per audio second, "
          f"step {a.step_seconds:g} s, partials {a.partials}, draft final {not a.no_draft_final}, "
          f"kept sequence {not a.no_keep_kv}, speculative final {a.speculative_final}; "
          f"CPU: {cpu_line()}\n")
    print("| measure | value |\n|---|---:|")
    print(f"| stream length / utterances / finals | {s['audio_s']:.0f} s / {s['utterances']} / {s['finals']} |")
    print(f"| final after the utterance's end: median / p90 / max | {med(s['final_latency']):.2f} / "
          f"{pct(s['final_latency'], 90):.2f} / {max(s['final_latency'] or [float('nan')]):.2f} s |")
    print(f"| final after the detector's endpoint (speech_stopped): median / p90 | {med(s['after_endpoint']):.2f} / "
          f"{pct(s['after_endpoint'], 90):.2f} s |")
    print(f"| first partial after speech starts: median / p90 | {med(s['first_partial_latency']):.2f} / "
          f"{pct(s['first_partial_latency'], 90):.2f} s "
          f"({len(s['first_partial_latency'])} of {s['utterances']} utterances had one) |")
    print(f"| engine s per audio s: first minute / last minute / whole | {first:.3f} / {last:.3f} / "
          f"{s['engine_per_audio_all']:.3f} (last/first {last / first if first else float('nan'):.2f}) |")
    if conc:
        print("\n| concurrent streams | final median (first third / last third) | final max | first partial median "
              "| engine busy | holds |")
        print("|---:|---:|---:|---:|---:|---|")
        for c in conc:
            print(f"| {c['streams']} | {c['final_median']:.2f} s ({c['first_third_median']:.2f} / "
                  f"{c['last_third_median']:.2f}) | {c['final_max']:.2f} s | "
                  f"{c['first_partial_median']:.2f} s | {c['engine_busy']:.2f} | {'yes' if c['holds'] else 'no'} |")
        one = s["engine_per_audio_all"]
        print(f"\nOne at a time (no batching) holds at most floor(1 / {one:.3f}) = "
              f"{math.floor(1 / one) if one else 'n/a'} streams.")
    print(f"\nload average at the end (1/5/15 min): {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
          f"(other processes on the machine share its cores)")
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
