"""The README's Python API snippet runs as written, on the demo model, and prints what the demo hears."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- readme-api -->\n```python\n(.*?)```", text, re.S)
    assert m, "README.md lost its <!-- readme-api --> snippet"
    return m.group(1)


def test_readme_api_snippet_runs():
    r = subprocess.run([sys.executable, "-c", readme_snippet()], capture_output=True, text=True, timeout=300,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    spoken = (ROOT / "asrgguf" / "data" / "demo" / "sample.txt").read_text(encoding="utf-8").strip()
    assert lines[0].endswith(spoken)                     # the segment, as the demo hears the packaged sample
    words = [ln.split()[-1] for ln in lines[1:-2]]       # its aligned words, in order
    assert words == re.findall(r"[A-Za-z']+", spoken)
    assert lines[-2].startswith("English ")
    assert lines[-1].startswith(spoken + " ")
