#!/usr/bin/env python3
"""Time and peak RSS of asrgguf's quantizer beside llama.cpp's converter on the same checkpoint.

Each conversion runs in its own process (measured with os.wait4: wall time, peak RSS of the
process and its children). llama.cpp's converter is `convert_hf_to_gguf.py` from the llama-cpp-python
sdist (ASRGGUF_LLAMA_CPP_SRC or --llama-cpp-src), run once for the decoder and once with --mmproj,
as its users must.

    python bench/quantize.py CHECKPOINT_DIR --outtype q8_0 --workdir /tmp/bq [--markdown OUT]

Figures: docs/quantize.md.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proc_stats import run_measured  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", type=Path)
    ap.add_argument("--outtype", default="q8_0")
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--llama-cpp-src", default=os.environ.get("ASRGGUF_LLAMA_CPP_SRC"))
    ap.add_argument("--markdown", type=Path)
    a = ap.parse_args(argv)
    a.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    ours = a.workdir / "asrgguf"
    shutil.rmtree(ours, ignore_errors=True)
    cmd = [sys.executable, "-m", "asrgguf.cli", "quantize", str(a.model), "--outtype", a.outtype, "-o", str(ours),
           "--quiet"]
    st = run_measured(cmd, str(a.workdir / "asrgguf.out"), str(a.workdir / "asrgguf.err"))
    size = sum(p.stat().st_size for p in ours.glob("*.gguf"))
    rows.append(("asrgguf quantize (decoder + mmproj f16)", st, size))
    if a.llama_cpp_src:
        src = Path(a.llama_cpp_src)
        theirs = a.workdir / "llama.cpp"
        shutil.rmtree(theirs, ignore_errors=True)
        theirs.mkdir()
        env_pp = str(src / "gguf-py")
        for extra, name, otype in (([], f"decoder-{a.outtype}.gguf", a.outtype), (["--mmproj"], "mmproj-f16.gguf", "f16")):
            cmd = ["env", f"PYTHONPATH={env_pp}", sys.executable, str(src / "convert_hf_to_gguf.py"), str(a.model),
                   "--outtype", otype, "--outfile", str(theirs / name)] + extra
            st = run_measured(cmd, str(theirs / f"{name}.out"), str(theirs / f"{name}.err"))
            rows.append((f"llama.cpp convert_hf_to_gguf.py {'--mmproj ' if extra else ''}({otype})", st,
                         (theirs / name).stat().st_size if (theirs / name).exists() else 0))
    lines = [f"checkpoint `{a.model.name}`, --outtype {a.outtype}", "",
             "| converter | exit | time real (s) | max RSS (MB) | output (MB) |", "|---|---:|---:|---:|---:|"]
    for name, st, size in rows:
        lines.append(f"| {name} | {st.returncode} | {st.wall_s:.1f} | {st.maxrss_mb:.0f} | {size / 2**20:.0f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.markdown:
        a.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
