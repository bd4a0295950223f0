#!/usr/bin/env python3
"""Benchmark table: the official qwen-asr, asrgguf and llama.cpp's own pipeline on one audio file.

    python bench/compare.py --audio CLIP.wav --random 0.6b [--tokens 200] [--runs 3]
    python bench/compare.py --audio CLIP.wav --model Qwen3-ASR-0.6B/ [--contenders official-f32,asrgguf-q8_0]

Each contender runs in its own process; the process's wall time and peak RSS (of it and its
children, from os.wait4: the largest single process, as `/usr/bin/time -v` reports) are measured.
Contenders (names for --contenders; "default" is the set below, "all" adds the extras):
  official-f32, official-bf16   the official package as users run it (transformers backend,
                                Qwen3ASRModel.from_pretrained + transcribe) on the CPU
  official-cuda, official-mps   bfloat16 / float16 on the GPU, in the default set when torch sees one
  asrgguf-f16, asrgguf-q8_0, asrgguf-q4_k_m
                                `python -m asrgguf.cli run` with that decoder + the f16 mmproj
  mtmd-q8_0                     llama.cpp's own all-ggml pipeline (libmtmd through
                                llama_cpp.mtmd_cpp, bench/mtmd_run.py) on the same GGUF pair
  asrgguf-q8_0-llamacpp         asrgguf-q8_0 with --no-native: llama.cpp's own q8_0 products instead of
                                asrgguf's native backend (native/), on the same GGUF
  extras: mtmd-f16, mtmd-q4_k_m, asrgguf-q8_0-bf16 (asrgguf with a bfloat16 torch encoder),
         asrgguf-q8_0-keeppages (the encoder's f16 weights kept resident, as before their pages were released)
The GGUFs are made once with `asrgguf quantize` into WORKDIR/gguf and reused. With --random
(a real-size random checkpoint from tests/support/random_checkpoint.py, made once into WORKDIR) every
contender generates exactly --tokens N tokens (default 200), ignoring end-of-turn, since cost does
not depend on the weight values; with --model the default is the natural stop (512 at most)
unless --tokens is given.

The table has wall time, peak RSS, the contender's own encoder / prefill / decode seconds and
decode tokens/s where it reports them, the word similarity to the official float32 output
(difflib SequenceMatcher over whitespace words) and the WER against it (jiwer). It is printed as
Markdown (and written with --markdown) and written as JSON (--json, default WORKDIR/compare.json).
--probe measures the machine's read bandwidth before each round of runs and records it with them (a VM's
bandwidth can swing by spells; decode speed follows it).

Figures: docs/benchmarks.md (the CPU and CUDA tables), docs/native.md ("End to end"), docs/memory.md.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import difflib
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from proc_stats import cpu_line, run_measured  # noqa: E402

PY = sys.executable
DEFAULT_SET = ["official-f32", "official-bf16", "official-cuda", "official-mps",
               "asrgguf-f16", "asrgguf-q8_0", "asrgguf-q8_0-llamacpp", "asrgguf-q4_k_m", "mtmd-q8_0"]
EXTRAS = ["mtmd-f16", "mtmd-q4_k_m", "asrgguf-q8_0-bf16", "asrgguf-q8_0-keeppages"]
GPU_ONLY = {"official-cuda": "cuda", "official-mps": "mps"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- contenders
def contender_spec(name: str) -> dict:
    """What a contender name means: its kind, decoder type, labels."""
    if name in ("official-f32", "official-bf16"):
        dt = "float32" if name.endswith("f32") else "bfloat16"
        return {"kind": "official", "dtype": dt, "device": "cpu", "impl": "official qwen-asr (transformers)",
                "weights": dt}
    if name == "official-cuda":
        return {"kind": "official", "dtype": "bfloat16", "device": "cuda", "impl": "official qwen-asr (transformers)",
                "weights": "bfloat16"}
    if name == "official-mps":
        return {"kind": "official", "dtype": "float16", "device": "mps", "impl": "official qwen-asr (transformers)",
                "weights": "float16"}
    if name.startswith("asrgguf-"):
        rest = name[len("asrgguf-"):]
        enc_dtype, native, env = "auto", True, {}
        if rest.endswith("-keeppages"):   # the encoder's f16 weights kept resident (before 2026-12-03's release)
            rest, env = rest[:-len("-keeppages")], {"ASRGGUF_ENCODER_KEEP_PAGES": "1"}
        if rest.endswith("-llamacpp"):
            rest, native = rest[:-len("-llamacpp")], False
        if rest.endswith("-bf16"):
            rest, enc_dtype = rest[:-len("-bf16")], "bfloat16"
        return {"kind": "asrgguf", "outtype": rest, "enc_dtype": enc_dtype, "native": native, "env": env,
                "impl": "asrgguf (torch encoder + llama.cpp)" + ("" if native else ", llama.cpp's own products"),
                "weights": f"{rest} + f16 mmproj" + (" (bf16 encoder)" if enc_dtype == "bfloat16" else "")}
    if name.startswith("mtmd-"):
        rest = name[len("mtmd-"):]
        return {"kind": "mtmd", "outtype": rest, "impl": "llama.cpp all-ggml (libmtmd)",
                "weights": f"{rest} + f16 mmproj"}
    raise SystemExit(f"compare: unknown contender {name!r} (known: {', '.join(DEFAULT_SET + EXTRAS)})")


def gpu_devices() -> set[str]:
    """Which torch GPU devices exist, asked in a child process (keeps torch out of this one)."""
    code = ("import torch,json;print(json.dumps([d for d,ok in (('cuda',torch.cuda.is_available()),"
            "('mps',getattr(torch.backends,'mps',None) is not None and torch.backends.mps.is_available())) if ok]))")
    try:
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120).stdout
        return set(json.loads(out.strip().splitlines()[-1]))
    except Exception:
        return set()


def resolve_contenders(arg: str) -> list[str]:
    names: list[str] = []
    for item in [s.strip() for s in arg.split(",") if s.strip()]:
        if item in ("default", "all"):
            names += DEFAULT_SET + (EXTRAS if item == "all" else [])
        else:
            names.append(item)
    seen, out = set(), []
    for n in names:
        if n not in seen:
            contender_spec(n)
            seen.add(n)
            out.append(n)
    if any(n in GPU_ONLY for n in out):
        have = gpu_devices()
        explicit = {s.strip() for s in arg.split(",")}
        kept = []
        for n in out:
            if n in GPU_ONLY and GPU_ONLY[n] not in have:
                if n in explicit:
                    log(f"compare: skipping {n}: torch sees no {GPU_ONLY[n]} device")
                continue
            kept.append(n)
        out = kept
    return out


# --------------------------------------------------------------------------- setup
def _stamp(model_dir: Path) -> str:
    parts = []
    for p in sorted(model_dir.iterdir()):
        if p.is_file() and p.suffix in (".safetensors", ".json"):
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{int(st.st_mtime)}")
    return "\n".join(parts)


def make_random_checkpoint(size: str, workdir: Path) -> Path:
    out = workdir / f"random-{size}"
    if (out / "config.json").exists() and any(out.glob("*.safetensors")) and (out / "tokenizer_config.json").exists():
        log(f"compare: reusing {out}")
        return out
    log(f"compare: making a random {size} checkpoint in {out} ...")
    subprocess.run([PY, str(HERE / "random_checkpoint.py"), str(out), "--size", size], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def ensure_gguf(model_dir: Path, outtype: str, gguf_dir: Path, threads: int) -> tuple[Path, Path]:
    """asrgguf quantize once per type; files are reused while the checkpoint is unchanged."""
    name = model_dir.resolve().name
    dec = gguf_dir / f"{name}-{outtype}.gguf"
    mm = gguf_dir / f"mmproj-{name}-f16.gguf"
    stamp = gguf_dir / f".source-{name}-{outtype}"
    src = _stamp(model_dir)
    if dec.exists() and mm.exists() and stamp.exists() and stamp.read_text() == src:
        return dec, mm
    log(f"compare: asrgguf quantize {model_dir} --outtype {outtype} -> {gguf_dir}")
    gguf_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([PY, "-m", "asrgguf.cli", "quantize", str(model_dir), "--outtype", outtype,
                    "--mmproj-type", "f16", "-o", str(gguf_dir), "--threads", str(threads), "--quiet"],
                   check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    if not (dec.exists() and mm.exists()):
        raise SystemExit(f"compare: asrgguf quantize did not write {dec} and {mm}")
    stamp.write_text(src)
    return dec, mm


def build_command(name: str, spec: dict, audio: str, model_dir: Path, ggufs: dict, tokens: int | None,
                  threads: int, language: str | None, mtmd_flash_attn: str = "auto") -> list[str]:
    if spec["kind"] == "official":
        cmd = [PY, str(HERE / "official_run.py"), audio, "--model", str(model_dir), "--dtype", spec["dtype"],
               "--device", spec["device"], "--threads", str(threads)]
    elif spec["kind"] == "asrgguf":
        dec, mm = ggufs[spec["outtype"]]
        cmd = [PY, "-m", "asrgguf.cli", "run", "--gguf", str(dec), "--mmproj", str(mm), audio,
               "--format", "json", "--threads", str(threads), "--device", "cpu" if spec["enc_dtype"] != "auto"
               else "auto", "--dtype", spec["enc_dtype"],
               # one piece, as the official package treats anything up to 20 min: the same work per token
               "--piece-seconds", "1200"] + ([] if spec.get("native", True) else ["--no-native"])
    else:
        dec, mm = ggufs[spec["outtype"]]
        cmd = [PY, str(HERE / "mtmd_run.py"), audio, "--model", str(dec), "--mmproj", str(mm),
               "--threads", str(threads), "--flash-attn", mtmd_flash_attn]
    if tokens:
        cmd += ["--bench-tokens", str(tokens)]
    if language:
        cmd += ["--language", language]
    return cmd


# --------------------------------------------------------------------------- running
def probe_bandwidth(threads: int) -> float | None:
    """The machine's streaming read bandwidth now (GB/s with `threads` threads, the native backend's own read
    loop over 640 MiB, in a child process): this VM's bandwidth swings by spells, and a decode that streams
    near it slows with it. None where the backend is not there."""
    code = ("import json; import llama_cpp.llama_cpp; from asrgguf import native; native.load(); "
            f"print(json.dumps(native.probe_machine({threads}).get('read_gbs_{threads}')))")
    try:
        out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO).stdout
        v = json.loads(out.strip().splitlines()[-1])
        return round(float(v), 1) if v else None
    except Exception:
        return None


def parse_json_stdout(path: Path) -> dict | None:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
    return None


def stage_times(kind: str, t: dict) -> dict:
    """Normalise each contender's own timings to encoder / prefill / decode / tok/s / prompt."""
    g = t.get
    if kind == "official":
        return {"encoder": g("encoder"), "prefill": g("prefill"), "decode": g("decode"),
                "decode_tokens_per_s": g("decode_tokens_per_s"), "load": g("load")}
    if kind == "asrgguf":
        return {"encoder": g("encoder"), "prefill": g("prefill"), "decode": g("decode"),
                "decode_tokens_per_s": g("decode_tokens_per_s"), "load": g("load")}
    # mtmd: encoder and prefill are interleaved per audio window and timed together
    return {"encoder": None, "prefill": None, "prompt": g("prompt"), "decode": g("decode"),
            "decode_tokens_per_s": g("decode_tokens_per_s"), "load": g("load")}


def run_one(name: str, spec: dict, cmd: list[str], outdir: Path, k: int, timeout: float | None) -> dict:
    stem = f"{name}.run{k}"
    out_json, out_err = outdir / f"{stem}.json", outdir / f"{stem}.stderr"
    env = dict(os.environ, **spec["env"]) if spec.get("env") else None
    st = run_measured(cmd, str(out_json), str(out_err), cwd=str(REPO), env=env, timeout=timeout)
    rec = {"run": k, "returncode": st.returncode, "timed_out": st.timed_out, "wall_s": st.wall_s,
           "maxrss_mb": st.maxrss_mb, "user_s": st.user_s, "sys_s": st.sys_s, "stdout": str(out_json),
           "stderr": str(out_err)}
    res = parse_json_stdout(out_json) if st.returncode == 0 else None
    if res is None:
        try:
            tail = out_err.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            tail = []
        rec["error"] = "; ".join(x for x in ["timed out" if st.timed_out else f"exit {st.returncode}",
                                            " | ".join(tail)] if x)
        return rec
    t = res.get("timings", {})
    rec.update({"model": res.get("model") or {}, "text": res.get("text", ""), "language": res.get("language", ""),
                "raw": res.get("raw", ""), "n_tokens": len(res.get("token_ids", [])),
                "n_prompt_positions": res.get("n_prompt_positions", t.get("prompt_tokens")),
                "timings": t, "stages": stage_times(spec["kind"], t)})
    return rec


def contender_device(spec: dict, runs: list[dict]) -> str:
    """Where a contender ran, from its own report: asrgguf's encoder and decoder devices, libmtmd's GPU layers."""
    if spec.get("device"):
        return spec["device"]
    m = next((r["model"] for r in runs if "error" not in r and r.get("model")), {})
    if spec["kind"] == "asrgguf":
        enc, dec = m.get("encoder_device", "cpu"), m.get("decoder_device", "cpu")
        if (enc, dec) == ("cpu", "cpu") or (enc != "cpu" and dec == "gpu"):
            return enc
        return f"encoder {enc}, decoder {dec}"
    return "gpu" if m.get("gpu_layers") else "cpu"


def _median(vals):
    vals = [v for v in vals if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def summarize(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"ok": False, "error": runs[-1].get("error") if runs else "not run"}
    keys = set().union(*(r["stages"].keys() for r in ok))
    return {"ok": True, "n_ok": len(ok), "wall_s": _median(r["wall_s"] for r in ok),
            "maxrss_mb": _median(r["maxrss_mb"] for r in ok),
            "stages": {k: _median(r["stages"].get(k) for r in ok) for k in sorted(keys)},
            "text": ok[-1]["text"], "n_tokens": ok[-1]["n_tokens"],
            "n_prompt_positions": ok[-1].get("n_prompt_positions"),
            "texts_agree": len({r["text"] for r in ok}) == 1}


def word_similarity(ref: str, hyp: str) -> float:
    a, b = ref.split(), hyp.split()
    if not a and not b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def word_error_rate(ref: str, hyp: str) -> float | None:
    if not ref.split():
        return None
    try:
        import jiwer
    except ImportError:
        return None
    return float(jiwer.wer(ref, hyp if hyp.split() else ""))


# --------------------------------------------------------------------------- output
def _f(v, nd=2):
    return "—" if v is None else f"{v:.{nd}f}"


def render_markdown(meta: dict, rows: list[dict]) -> str:
    head = ["run", "implementation", "model", "weights", "device", "time real (s)", "max RSS (MB)", "output file",
            "encoder (s)", "prefill (s)", "decode (s)", "decode tok/s", "tokens", "speed vs official f32",
            "word sim", "WER"]
    lines = []
    tok = meta["tokens"]
    lines.append(f"Audio: `{meta['audio']}` ({_f(meta.get('audio_seconds'))} s); model: {meta['model']}; "
                 + (f"{tok} generated tokens per contender (end-of-turn ignored)" if tok else "natural stop")
                 + f"; {meta['threads']} threads; median of {meta['runs']} run(s); {meta['machine']}"
                 + (f"; llama.cpp pipeline flash attention: {meta['mtmd_flash_attn']}" if meta.get("mtmd_flash_attn")
                    and meta["mtmd_flash_attn"] != "auto" else "")
                 + (f"; read bandwidth before each round: {', '.join(str(x) for x in meta['read_gbs_before_each_round'])}"
                    f" GB/s" if meta.get("read_gbs_before_each_round") else "") + ".")
    lines.append("")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---" if i < 5 or i == 7 else "---:" for i in range(len(head))) + "|")
    ref_wall = next((r["summary"].get("wall_s") for r in rows if r["name"] == meta.get("reference")
                     and r["summary"].get("ok")), None)
    for r in rows:
        s = r["summary"]
        if not s.get("ok"):
            err = (s.get("error") or "failed").replace("|", "/")[:120]
            lines.append(f"| {r['name']} | {r['impl']} | {meta['model']} | {r['weights']} | {r['device']} | "
                         f"failed | — | — | — | — | — | — | — | — | — | {err} |")
            continue
        st = s["stages"]
        if st.get("prompt") is not None and st.get("prefill") is None:
            enc, pre = "—", f"{st['prompt']:.2f}†"
        else:
            enc, pre = _f(st.get("encoder")), _f(st.get("prefill"))
        speed = (f"{ref_wall / s['wall_s']:.2f}×" if ref_wall and s["wall_s"] else "—")
        lines.append(
            f"| {r['name']} | {r['impl']} | {meta['model']} | {r['weights']} | {r['device']} | {_f(s['wall_s'])} | "
            f"{s['maxrss_mb']:.0f} | {r['output_file']} | {enc} | {pre} | {_f(st.get('decode'))} | "
            f"{_f(st.get('decode_tokens_per_s'), 1)} | {s['n_tokens']} | {speed} | "
            f"{_f(r.get('word_similarity'), 3)} | {_f(r.get('wer'), 3)} |")
    lines.append("")
    lines.append("time real: wall clock of the whole process (start-up, imports, model load, audio, inference). "
                 "max RSS: peak resident set of the process or its largest descendant (os.wait4 ru_maxrss), "
                 "not a sum. encoder / prefill / decode: the contender's own in-process timings "
                 "(decode tok/s over the tokens after the first). † llama.cpp's libmtmd alternates "
                 "encoder and prefill per 8-s audio window: encoder + prefill together. word sim: difflib "
                 "SequenceMatcher ratio over whitespace words against the reference output "
                 f"({meta.get('reference') or 'none'}); WER: jiwer against the same.")
    if meta.get("random"):
        lines.append("Random weights: the transcripts are meaningless; similarity and WER only show whether two "
                     "implementations compute the same thing (llama.cpp's pipeline feeds a different number of "
                     "audio positions, see n_prompt_positions in the JSON).")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- main
def audio_seconds(path: str) -> float | None:
    try:
        import soundfile as sf

        info = sf.info(path)
        return info.frames / float(info.samplerate)
    except Exception:
        return None


def machine_line() -> str:
    """The CPU's model name and vector flags (proc_stats.cpu_line), its cores and the system."""
    return f"{cpu_line()}, {os.cpu_count()} cores, {platform.system()}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--audio", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="Qwen3-ASR checkpoint directory")
    src.add_argument("--random", choices=["tiny", "0.6b", "1.7b"], help="make and use a random checkpoint")
    ap.add_argument("--tokens", type=int, default=None,
                    help="generate exactly N tokens per contender, ignoring end-of-turn (default: 200 with "
                         "--random, natural stop with --model; 0: natural stop)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contenders", default="default",
                    help=f"comma list; 'default' = {','.join(DEFAULT_SET)} (GPU ones only where present); "
                         f"'all' adds {','.join(EXTRAS)}")
    ap.add_argument("--runs", type=int, default=1, help="runs per contender (medians reported)")
    ap.add_argument("--warmup", action="store_true", help="one unmeasured run per contender first (page cache)")
    ap.add_argument("--language", default=None, help="force the language in every contender")
    ap.add_argument("--workdir", type=Path, default=REPO / "bench-out" / "compare")
    ap.add_argument("--json", type=Path, default=None, help="default: WORKDIR/compare.json")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table here")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per contender run")
    ap.add_argument("--probe", action="store_true",
                    help="measure the machine's read bandwidth before each round (recorded with the runs): this "
                         "VM's bandwidth swings, and decode speed with it")
    ap.add_argument("--mtmd-flash-attn", choices=["auto", "on", "off"], default="auto",
                    help="flash attention in llama.cpp's pipeline (off for a CUDA build made with GGML_CUDA_FA=OFF)")
    a = ap.parse_args(argv)

    audio = str(Path(a.audio).resolve())
    if not Path(audio).is_file():
        raise SystemExit(f"compare: {a.audio}: no such file")
    workdir = a.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    names = resolve_contenders(a.contenders)
    if not names:
        raise SystemExit("compare: no contenders to run")

    if a.random:
        model_dir = make_random_checkpoint(a.random, workdir)
        model_label = f"random {a.random}"
        tokens = 200 if a.tokens is None else a.tokens
    else:
        model_dir = a.model.resolve()
        if not (model_dir / "config.json").exists():
            raise SystemExit(f"compare: {model_dir}: not a checkpoint directory (no config.json)")
        model_label = model_dir.name
        tokens = a.tokens or 0
    tokens = tokens or None

    specs = {n: contender_spec(n) for n in names}
    gguf_dir = workdir / "gguf"
    ggufs = {}
    for n in names:
        ot = specs[n].get("outtype")
        if ot and ot not in ggufs:
            ggufs[ot] = ensure_gguf(model_dir, ot, gguf_dir, a.threads)

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    outdir = workdir / f"runs-{stamp}"
    outdir.mkdir(parents=True, exist_ok=True)
    cmds = {n: build_command(n, specs[n], audio, model_dir, ggufs, tokens, a.threads, a.language,
                                 a.mtmd_flash_attn) for n in names}

    if a.warmup:
        for n in names:
            log(f"compare: warm-up {n}")
            run_one(n, specs[n], cmds[n], outdir, 0, a.timeout)

    all_runs: dict[str, list[dict]] = {n: [] for n in names}
    probes = []
    for k in range(1, a.runs + 1):  # interleaved, so drift hits every contender alike
        if a.probe:
            probes.append(probe_bandwidth(a.threads))
            log(f"compare: round {k}: machine read bandwidth {probes[-1]} GB/s ({a.threads} threads)")
        for i, n in enumerate(names, 1):
            rec = run_one(n, specs[n], cmds[n], outdir, k, a.timeout)
            if a.probe:
                rec["read_gbs_before_round"] = probes[-1]
            all_runs[n].append(rec)
            msg = (f"{rec['wall_s']:.2f} s, {rec['maxrss_mb']:.0f} MB, {rec.get('n_tokens')} tokens"
                   if "error" not in rec else f"FAILED ({rec['error'][:200]})")
            log(f"compare: [{i}/{len(names)}] {n} run {k}/{a.runs}: {msg}")

    rows = []
    for n in names:
        s = summarize(all_runs[n])
        out_file = outdir / f"{n}.txt"
        if s.get("ok"):
            out_file.write_text(s["text"] + "\n", encoding="utf-8")
        shown = os.path.relpath(out_file)
        if shown.startswith(".."):
            shown = str(out_file)
        spec = specs[n]
        device = contender_device(spec, all_runs[n])
        rows.append({"name": n, "impl": spec["impl"], "weights": spec["weights"], "device": device,
                     "command": cmds[n], "output_file": shown if s.get("ok") else None, "summary": s,
                     "runs": all_runs[n]})

    ref_name = "official-f32" if any(r["name"] == "official-f32" and r["summary"].get("ok") for r in rows) else \
        next((r["name"] for r in rows if r["name"].startswith("official") and r["summary"].get("ok")), None)
    ref_text = next((r["summary"]["text"] for r in rows if r["name"] == ref_name), None)
    for r in rows:
        if ref_text is not None and r["summary"].get("ok"):
            r["word_similarity"] = word_similarity(ref_text, r["summary"]["text"])
            r["wer"] = word_error_rate(ref_text, r["summary"]["text"])

    meta = {"audio": a.audio, "audio_seconds": audio_seconds(audio), "model": model_label,
            "model_dir": str(model_dir), "random": bool(a.random), "tokens": tokens, "threads": a.threads,
            "runs": a.runs, "warmup": a.warmup, "mtmd_flash_attn": a.mtmd_flash_attn, "reference": ref_name,
            "machine": machine_line(),
            "python": sys.version.split()[0], "date": _dt.datetime.now().isoformat(timespec="seconds"),
            "outdir": str(outdir), "ggufs": {k: [str(p) for p in v] for k, v in ggufs.items()},
            "maxrss_note": "os.wait4 ru_maxrss: peak RSS of the process or its largest descendant, not a sum"}
    if a.probe:
        meta["read_gbs_before_each_round"] = probes
    md = render_markdown(meta, rows)
    print(md)
    json_path = a.json or workdir / "compare.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"meta": meta, "results": rows}, indent=2, ensure_ascii=False), encoding="utf-8")
    log(f"compare: JSON written to {json_path}")
    if a.markdown:
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text(md, encoding="utf-8")
        log(f"compare: Markdown written to {a.markdown}")
    return 0 if all(r["summary"].get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
