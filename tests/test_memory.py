"""No second copy of the decoder's weights (issue 27, docs/memory.md).

The native backend repacks each q8_0 product weight into its own buffer; llama.cpp hands it the bytes
from its mmap of the GGUF (populated whole at load). What stays resident in that mapping after load must
be no more than the tensors llama.cpp itself keeps there (everything but the backend's weights, read from
the file's own tensor table with gguf-py), plus page slack; with ASRGGUF_NATIVE_KEEP_SOURCE=1 (the old
behaviour: the mapped pages kept beside the repacked copy) the same check fails, so a second copy coming
back fails this test. Decoder runs are subprocesses (tests/support/memory_probe.py): the backend registers once
per process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_native import native_lib  # noqa: F401  (the fixture: builds the library when missing)

ROOT = Path(__file__).resolve().parents[1]
PROBE = Path(__file__).resolve().parent / "memory_probe.py"
PAGE = os.sysconf("SC_PAGE_SIZE")
FOLIO = 2 * 2**20   # the most the kernel maps for one faulting read of a cached file (a PMD-sized folio)


def probe(gguf: Path, native: str = "on", env: dict | None = None) -> dict:
    e = {k: v for k, v in os.environ.items() if not k.startswith("ASRGGUF_N")}
    e.update(env or {})
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, str(PROBE), str(gguf), "--native", native],
                       capture_output=True, text=True, env=e, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def tensor_bytes(gguf: Path) -> dict:
    """Bytes of the file's token embedding, of its other q8_0 (product) weights, and of the rest."""
    import gguf as g

    r = g.GGUFReader(str(gguf))
    out = {"token_embd": 0, "products": 0, "rest": 0, "n": len(r.tensors)}
    for t in r.tensors:
        kind = ("token_embd" if t.name == "token_embd.weight" else "products"
                if t.tensor_type == g.GGMLQuantizationType.Q8_0 and len(t.shape) == 2 else "rest")
        out[kind] += int(t.n_bytes)
    return out


def test_decoder_weights_are_resident_once(ck_mha, gguf_pair, native_lib):  # noqa: F811
    """Tied output head, as the published 0.6B and 1.7B: llama.cpp keeps token_embd in its mapping (for
    GET_ROWS) and the backend repacks the output matrix from the same bytes."""
    dec, _ = gguf_pair(ck_mha, "q8_0")
    sizes = tensor_bytes(dec)
    embd = sizes["token_embd"]
    new = probe(dec)
    old = probe(dec, env={"ASRGGUF_NATIVE_KEEP_SOURCE": "1"})
    ref = probe(dec, "off")
    assert new["native"]["used"] and new["native"]["weights"] == 15, new
    assert new["ids"] == old["ids"] == ref["ids"]
    # the backend took every product weight (the output matrix read from token_embd's bytes) and dropped
    # their pages from llama.cpp's mapping, all but a partial page at each end
    assert new["stats"]["bytes"] == sizes["products"] + embd
    assert new["stats"]["bytes"] - 2 * 15 * PAGE <= new["stats"]["released_bytes"] <= new["stats"]["bytes"]
    assert old["stats"]["released_bytes"] == 0
    # what stays resident in llama.cpp's mapping after load: its own small tensors, not token_embd; with the
    # pages kept (the second copy back) token_embd whole
    small = sizes["rest"] + sizes["n"] * 2 * PAGE
    assert new["map_rss_after_load"] <= small < embd, (new, sizes)
    assert old["map_rss_after_load"] >= embd, (old, sizes)
    # after 4 decode steps GET_ROWS has faulted in the rows looked up: the kernel maps a whole large folio of
    # the page cache per fault (up to 2 MiB on Linux 6.18), still well under token_embd whole here
    assert new["map_rss_after_decode"] <= small + 4 * FOLIO, (new, sizes)
    # the whole process: within 8 MiB of llama.cpp's own run of the same steps (where token_embd is the output
    # matrix too, used from the map; measured +2.6 MiB: the backend's own buffers and tables); with the pages
    # kept, a copy of token_embd above this run
    assert new["vm_rss"] <= ref["vm_rss"] + 8 * 2**20, (new, ref)
    assert old["vm_rss"] >= new["vm_rss"] + embd - small - 4 * FOLIO, (old, new)
