"""Property-based fuzzing (hypothesis, fixed seed): the GGUF readers and the audio loader, given random
and mutated input, return a result or raise AsrggufError with a one-line message that begins with the
input's name; never another exception, never a crash of the process. Audio that loads is also transcribed
(demo model) and the result checked: duration = samples / 16000, ids inside the vocabulary, segments in
order and inside the duration (tests/support/fuzz_audio.py).

The GGUF side is Python and numpy (gguf-py, asrgguf's own header walker, the encoder's loader) and runs
here; the audio side goes through libsndfile, FFmpeg and soxr, C libraries, so it runs in a child process
(tests/support/fuzz_audio.py) whose death by a signal fails the test instead of the test run.
"""
from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asrgguf.errors import AsrggufError

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))
_U64 = [0, 1, 7, 8, 9, 255, 1 << 31, (1 << 32) - 1, 1 << 32, 1 << 62, (1 << 64) - 1]


def _small_decoder(path: Path) -> Path:
    """A qwen3vl GGUF as the quantizer writes one, with a 40-token vocabulary (a real one takes gguf-py
    seconds to parse: too slow to fuzz)."""
    import gguf
    import numpy as np

    w = gguf.GGUFWriter(str(path), arch="qwen3vl")
    w.add_block_count(1)
    w.add_context_length(128)
    w.add_embedding_length(8)
    w.add_file_type(7)
    w.add_array("qwen3vl.rope.dimension_sections", [2, 1, 1, 0])
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(40)])
    w.add_token_types([1] * 40)
    w.add_token_merges(["t 1", "t 2"])
    w.add_tensor("token_embd.weight", np.zeros((40, 8), np.float32))
    w.add_tensor("output_norm.weight", np.ones(8, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture(scope="module")
def seeds(gguf_pair, ck_gqa, tmp_path_factory):
    """A small decoder and the tiny checkpoint's mmproj: (bytes, where the tensor data starts) for each."""
    import gguf

    out = {}
    dec = _small_decoder(tmp_path_factory.mktemp("seed") / "small-decoder.gguf")
    for kind, path in (("decoder", dec), ("mmproj", gguf_pair(ck_gqa, "q8_0")[1])):
        r = gguf.GGUFReader(str(path))
        out[kind] = (Path(path).read_bytes(), min(int(t.data_offset) for t in r.tensors))
    return out


@st.composite
def mutations(draw, data: bytes, header_end: int):
    """1-4 edits, mostly inside the header (KV + tensor infos): bytes, 64-bit length/count fields, cuts."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["byte", "u64", "u64", "cut", "cut_header"]))
        i = min(draw(st.integers(0, header_end - 1)), max(0, len(b) - 1))
        if not b:
            break
        if op == "byte":
            b[i] = draw(st.integers(0, 255))
        elif op == "u64":
            b[i:i + 8] = struct.pack("<Q", draw(st.sampled_from(_U64) | st.integers(0, (1 << 64) - 1)))
        elif op == "cut":
            del b[draw(st.integers(0, len(b))):]
        else:
            del b[i:]
    return bytes(b)


def _read_all(path: Path) -> None:
    """Every entry point that reads a GGUF: a result or AsrggufError."""
    from asrgguf.decoder import Decoder
    from asrgguf.encoder import load_from_gguf
    from asrgguf.gguf_file import field, open_gguf, read_kv

    for call in (lambda: [field(r, k) for r in [open_gguf(path, "test")] for k in r.fields],
                 lambda: read_kv(path, {"general.architecture", "general.file_type", "tokenizer.ggml.tokens"}),
                 lambda: Decoder.check_file(path),
                 lambda: load_from_gguf(path)):
        try:
            call()
        except AsrggufError as e:
            assert str(e) and "\n" not in str(e), str(e)
            assert str(e).startswith(f"{path}: "), (str(e), path)


@pytest.mark.parametrize("kind", ["decoder", "mmproj"])
def test_gguf_readers_on_mutated_files(seeds, kind, tmp_path_factory):
    data, header_end = seeds[kind]
    path = tmp_path_factory.mktemp("fuzz") / f"mutated-{kind}.gguf"

    @SETTINGS
    @given(mutations(data, header_end))
    def run(b):
        path.write_bytes(b)
        _read_all(path)
    run()


def test_gguf_readers_on_random_bytes(tmp_path):
    path = tmp_path / "random.gguf"

    @SETTINGS
    @given(st.binary(max_size=512), st.booleans())
    def run(b, magic):
        path.write_bytes((b"GGUF" + b) if magic else b)
        _read_all(path)
    run()


def test_audio_loader_in_a_child_process(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "support" / "fuzz_audio.py"), str(tmp_path),
                        "150"],
                       capture_output=True, text=True, timeout=600)
    last = sorted(p.name for p in tmp_path.iterdir())
    assert r.returncode == 0, (r.returncode, r.stdout[-3000:], r.stderr[-3000:], f"last inputs in {tmp_path}: {last}")
    counts = dict(zip(*[iter(r.stdout.split())] * 2))
    # every path was exercised: transcribed results, refused inputs, audio too short for the log-mel
    assert int(counts["ok"]) > 10 and int(counts["error"]) > 10 and int(counts["short"]) > 0, r.stdout
