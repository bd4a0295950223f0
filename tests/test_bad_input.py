"""Bad input, tried as a user would: every case is one exact line `asrgguf: error: ...` on stderr, the
exit code, no traceback; batches and the quantizer lose no earlier output and leave no half-written file.

Most cases fail before any model loads (a fraction of a second each); the ones that need a model use the
built-in demo model (about 1 s to load) and share one run where a batch can hold them.
Permission cases: the tests run as root, which reads everything; the CLI is started with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from its capability bounding set (prctl before exec),
so a mode-000 file is as unreadable to it as to any user.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "asrgguf" / "data" / "demo"
DEC = DEMO / "qwen3-asr-demo-q8_0.gguf"
MM = DEMO / "mmproj-qwen3-asr-demo-f16.gguf"
SAMPLE = DEMO / "sample.wav"
SAMPLE_TEXT = (DEMO / "sample.txt").read_text().strip()
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _no_dac():
    """preexec_fn: drop root's power to ignore file modes (for the permission cases; others have none)."""
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            os._exit(99)


def cli(*args, unprivileged=False, timeout=300, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "asrgguf.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env or ENV, cwd=cwd or ROOT,
                          preexec_fn=_no_dac if unprivileged else None)


def one_line(r, code=1) -> str:
    """The one stderr line of a failed run (exit `code`, no traceback)."""
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


def err(msg: str) -> str:
    return f"asrgguf: error: {msg}"


# --------------------------------------------------------------------------- inputs
@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> Path:
    """Every bad audio input, made from the demo's sample (22.05 kHz speech)."""
    d = tmp_path_factory.mktemp("bad")
    d.chmod(0o755)
    w, sr = sf.read(SAMPLE, dtype="float32")
    rng = np.random.default_rng(0)
    (d / "zero.wav").write_bytes(b"")
    for ext in ("wav", "mp3", "flac"):
        (d / f"random.{ext}").write_bytes(rng.bytes(5000))
    for ext, kw in (("wav", {}), ("flac", {}), ("mp3", {"format": "MP3"})):
        sf.write(d / f"full.{ext}", w, sr, **kw)
        b = (d / f"full.{ext}").read_bytes()
        (d / ("truncated.wav" if ext == "wav" else f"truncated-{ext}.{ext}")).write_bytes(b[:len(b) // 2])
    (d / "header-only.wav").write_bytes((d / "full.wav").read_bytes()[:20])
    for name, v in (("nan", np.nan), ("inf", np.inf)):
        x = w.copy()
        x[1000] = v
        sf.write(d / f"{name}.wav", x, sr, subtype="FLOAT")
    sf.write(d / "u8.wav", w, sr, subtype="PCM_U8")
    sf.write(d / "ch8.wav", np.stack([w] * 8, axis=1), sr)
    import soxr

    sf.write(d / "8k.wav", soxr.resample(w, sr, 8000), 8000)
    sf.write(d / "192k.wav", soxr.resample(w, sr, 192000), 192000)
    sf.write(d / "short.wav", w[:int(0.05 * sr)], sr)        # 0.05 s: 800 samples at 16 kHz
    sf.write(d / "tiny.wav", w[:int(0.01 * sr)], sr)         # 0.01 s: 160 samples, under the 201 a frame needs
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=64x64:rate=5",
                    "-t", "1", "-pix_fmt", "yuv420p", str(d / "video.mp4")], check=True)
    (d / "emptydir").mkdir()
    os.mkfifo(d / "fifo.wav")
    shutil.copy(SAMPLE, d / "noperm.wav")
    (d / "noperm.wav").chmod(0)
    # 3 h of 16 kHz 16-bit silence as a sparse file: 345.6 MB long, no disk blocks
    n = 3 * 3600 * 16000 * 2
    with open(d / "silence-3h.wav", "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + n) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16000, 32000, 2, 16)
                + b"data" + struct.pack("<I", n))
        f.truncate(44 + n)
    return d


# --------------------------------------------------------------------------- audio, before any model loads
AUDIO_ERRORS = [
    ("missing.wav", "{p}: no such file"),
    ("", "'': empty audio path"),
    ("zero.wav", "{p}: file is empty"),
    ("random.wav", "{p}: cannot decode audio (Invalid data found when processing input)"),
    ("random.mp3", "{p}: cannot decode audio (Invalid data found when processing input)"),
    ("random.flac", "{p}: cannot decode audio (Invalid data found when processing input)"),
    ("header-only.wav", "{p}: cannot decode audio (Invalid data found when processing input)"),
    ("video.mp4", "{p}: no audio stream in file"),
    ("emptydir", "{p}: no audio files in directory"),
    ("fifo.wav", "{p}: not a regular file (a pipe or device cannot be read twice; save it to a file)"),
]


@pytest.mark.parametrize("name,msg", AUDIO_ERRORS, ids=[a or "empty-arg" for a, _ in AUDIO_ERRORS])
def test_audio_error_before_loading(bad, name, msg):
    p = str(bad / name) if name else ""
    assert one_line(cli("run", "--model", "demo", p)) == err(msg.format(p=p))


def test_no_read_permission(bad):
    p = bad / "noperm.wav"
    assert one_line(cli("run", "--model", "demo", p, unprivileged=True)) == err(f"{p}: cannot read (permission denied)")


# --------------------------------------------------------------------------- audio the model must take
@pytest.fixture(scope="module")
def odd_batch(bad, tmp_path_factory):
    """One batch run over odd-but-valid inputs, with bad ones between them (errors found while decoding)."""
    out = tmp_path_factory.mktemp("odd")
    names = ["full.wav", "u8.wav", "nan.wav", "ch8.wav", "8k.wav", "inf.wav", "192k.wav", "short.wav", "tiny.wav",
             "truncated.wav", "truncated-mp3.mp3", "truncated-flac.flac"]
    r = cli("run", "--model", "demo", *[bad / n for n in names], "--output-dir", out, "--format", "json",
            "--quiet", "--max-new-tokens", "32", "--out-text", out.parent / "odd-all.txt")
    return r, out


def _out(odd_batch, name):
    return json.loads((odd_batch[1] / (Path(name).stem + ".json")).read_text())


def test_odd_batch_errors_in_order(bad, odd_batch):
    r, out = odd_batch
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [
        err(f"{bad / 'nan.wav'}: audio contains NaN or infinite samples"),
        err(f"{bad / 'inf.wav'}: audio contains NaN or infinite samples"),
        err(f"{bad / 'tiny.wav'}: audio is too short (160 samples at 16 kHz; at least 201 are needed)"),
        err(f"{bad / 'truncated-flac.flac'}: cannot decode audio (LibsndfileError: Error : flac decoder lost sync.)"),
    ]
    # the failed inputs have no output, not even a partial one; every other input has its whole output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{s}.json" for s in ("full", "u8", "ch8", "8k", "192k", "short", "truncated", "truncated-mp3"))
    # --out-text: every finished input's text, in input order
    texts = [json.loads((out / f"{s}.json").read_text())["text"]
             for s in ("full", "u8", "ch8", "8k", "192k", "short", "truncated", "truncated-mp3")]
    assert (out.parent / "odd-all.txt").read_text() == "\n".join(texts) + "\n"


@pytest.mark.parametrize("name", ["u8.wav", "ch8.wav", "192k.wav"])
def test_odd_format_transcribed(odd_batch, name):
    """8-bit unsigned, 8 channels, 192 kHz: the same words as from the sample as 16-bit wav."""
    assert _out(odd_batch, name)["text"] == _out(odd_batch, "full.wav")["text"]


def test_8khz_and_short_transcribed(odd_batch):
    d8, short = _out(odd_batch, "8k.wav"), _out(odd_batch, "short.wav")
    assert d8["duration"] == pytest.approx(59834 / 22050, abs=1e-3) and d8["segments"]
    assert short["duration"] == pytest.approx(0.05, abs=1e-3) and len(short["segments"]) == 1


def test_truncated_wav_and_mp3_give_what_is_there(odd_batch):
    """A wav or mp3 cut in half decodes up to the cut (as ffmpeg does): about half the sample's duration."""
    assert _out(odd_batch, "truncated.wav")["duration"] == pytest.approx(59834 / 22050 / 2, abs=0.01)
    assert 1.0 < _out(odd_batch, "truncated-mp3.mp3")["duration"] < 59834 / 22050 / 2 + 0.1


def test_three_hours_of_silence_stream_in_bounded_memory(bad):
    """3 h of silence starts decoding at once, in flat memory (the samples as float32 would be 691 MB),
    and Ctrl-C stops it with exit 130 (a full run takes several minutes on 2 cores: not run here)."""
    def rss(pid):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def reading(pid, path) -> bool:   # the audio file is open: the CLI is past its start-up, in the batch
        fds = Path(f"/proc/{pid}/fd")
        try:
            return any(os.readlink(fd) == str(path) for fd in fds.iterdir())
        except OSError:
            return False

    wav = bad / "silence-3h.wav"
    p = subprocess.Popen([sys.executable, "-m", "asrgguf.cli", "run", "--model", "demo", wav,
                          "--max-new-tokens", "4"], env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        t_end = time.monotonic() + 300   # however slow the start on a busy machine: wait for the reads
        while not reading(p.pid, wav):
            assert p.poll() is None and time.monotonic() < t_end, p.poll()
            time.sleep(0.05)
        peak = 0
        t_end = time.monotonic() + 10   # then 10 s of decoding (a whole run takes minutes)
        while time.monotonic() < t_end and p.poll() is None:
            peak = max(peak, rss(p.pid))
            time.sleep(0.2)
        assert p.poll() is None
        p.send_signal(signal.SIGINT)
        out, errs = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130 and errs.splitlines() == [err("interrupted")], errs
    assert peak < 600e6, peak


# --------------------------------------------------------------------------- model files
def _trunc(tmp_path, src: Path, n: int) -> Path:
    dst = tmp_path / f"{src.stem}-{n}.gguf"
    dst.write_bytes(src.read_bytes()[:n])
    return dst


def _patched(tmp_path, src: Path, offset: int, value: int, tag: str) -> Path:
    b = bytearray(src.read_bytes())
    b[offset:offset + 8] = struct.pack("<Q", value)
    dst = tmp_path / f"{src.stem}-{tag}.gguf"
    dst.write_bytes(bytes(b))
    return dst


@pytest.mark.parametrize("n,msg", [
    (10, "{p}: truncated GGUF file (header ends early)"),
    (30, "{p}: truncated or corrupt GGUF header (a length field points past the end)"),
    (1000, "{p}: llama.cpp could not load the decoder (llama_model_loader: failed to load model from {p})"),
    (1841200, "{p}: llama.cpp could not load the decoder (tensor 'blk.1.ffn_down.weight' data is not within the "
              "file bounds, model is corrupted or incomplete)"),
])
def test_truncated_decoder(tmp_path, n, msg):
    p = _trunc(tmp_path, DEC, n)
    assert one_line(cli("run", "--gguf", p, "--mmproj", MM, SAMPLE)) == err(msg.format(p=p))


@pytest.mark.parametrize("n", [10, 30, 1000, 4226048, 8452096 - 100])
def test_truncated_mmproj(tmp_path, n):
    p = _trunc(tmp_path, MM, n)
    assert one_line(cli("run", "--gguf", DEC, "--mmproj", p, SAMPLE)) == \
        err(f"{p}: corrupt or truncated GGUF file (ValueError)")


def test_corrupt_length_fields(tmp_path):
    """A string length of 2**62 (MemoryError / OverflowError before) and absurd KV / tensor counts."""
    p = _patched(tmp_path, DEC, 24, 1 << 62, "len")
    assert one_line(cli("run", "--gguf", p, "--mmproj", MM, SAMPLE)) == \
        err(f"{p}: truncated or corrupt GGUF header (a length field points past the end)")
    for off, tag in ((24, "len"), (16, "nkv"), (8, "ntensor")):
        p = _patched(tmp_path, MM, off, 1 << 62, tag)
        assert one_line(cli("run", "--gguf", DEC, "--mmproj", p, SAMPLE)) == \
            err(f"{p}: corrupt or truncated GGUF file (IndexError)")


def test_wrong_architecture_both_ways():
    assert one_line(cli("run", "--gguf", MM, "--mmproj", MM, SAMPLE)) == \
        err(f"{MM}: decoder architecture is 'clip', expected 'qwen3vl' (a Qwen3-ASR text decoder GGUF)")
    assert one_line(cli("run", "--gguf", DEC, "--mmproj", DEC, SAMPLE)) == \
        err(f"{DEC}: not a Qwen3-ASR audio encoder (mmproj projector None, expected 'qwen3a')")


def _mmproj_without(tmp_path, drop_tensor=None, drop_key=None, set_key=None) -> Path:
    """The demo mmproj rewritten with gguf-py, less one tensor or key (or one key changed)."""
    import gguf

    r = gguf.GGUFReader(str(MM))
    out = tmp_path / f"mmproj-{drop_tensor or drop_key or set_key[0]}.gguf"
    w = gguf.GGUFWriter(str(out), arch="clip")
    for name, f in r.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", drop_key):
            continue
        if set_key and name == set_key[0]:
            w.add_uint32(name, set_key[1])
            continue
        t = f.types[0]
        v = f.contents()
        if t == gguf.GGUFValueType.ARRAY:
            w.add_array(name, v)
        else:
            w.add_key_value(name, v, t)
    for t in r.tensors:
        if t.name != drop_tensor:
            w.add_tensor(t.name, np.asarray(t.data), raw_shape=list(reversed([int(x) for x in t.shape])),
                         raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out


@pytest.mark.parametrize("what,msg", [
    (dict(drop_tensor="a.conv2d.1.weight"), "audio encoder tensor 'a.conv2d.1.weight' is missing"),
    (dict(drop_tensor="a.blk.0.attn_k.weight"), "audio encoder tensor 'layers.0.self_attn.k_proj.weight' is missing"),
    (dict(drop_key="clip.audio.block_count"), "audio encoder key 'clip.audio.block_count' is missing"),
    (dict(set_key=("clip.audio.block_count", 1000)), "audio encoder tensor 'a.blk.999.attn_q.weight' is missing"),
    (dict(set_key=("clip.audio.embedding_length", 0)),
     "audio encoder key 'clip.audio.embedding_length' is 0, expected an integer from 1 to 65536"),
])
def test_mmproj_missing_tensor_or_key(tmp_path, what, msg):
    p = _mmproj_without(tmp_path, **what)
    assert one_line(cli("run", "--gguf", DEC, "--mmproj", p, SAMPLE)) == err(f"{p}: {msg}")


def test_mismatched_pair(gguf_pair, ck_gqa):
    _, mm64 = gguf_pair(ck_gqa, "q8_0")
    assert one_line(cli("run", "--gguf", DEC, "--mmproj", mm64, SAMPLE)) == \
        err(f"{mm64}: encoder output width 64 does not match the decoder's 256 ({DEC}): not a matching pair")


def test_gguf_without_read_permission(tmp_path):
    tmp_path.chmod(0o755)
    for src in (DEC, MM):
        p = tmp_path / src.name
        shutil.copy(src, p)
        p.chmod(0)
    d, m = tmp_path / DEC.name, tmp_path / MM.name
    assert one_line(cli("run", "--gguf", d, "--mmproj", MM, SAMPLE, unprivileged=True), 2) == \
        err(f"Invalid value for '--gguf': File '{d}' is not readable.")
    assert one_line(cli("run", "--gguf", DEC, "--mmproj", m, SAMPLE, unprivileged=True), 2) == \
        err(f"Invalid value for '--mmproj': File '{m}' is not readable.")
    # the Python API (no click in front): the same files, AsrggufError from the loaders' own checks
    code = ("import sys; from asrgguf.transcribe import Transcriber\n"
            "from asrgguf.errors import AsrggufError\n"
            "try: Transcriber.from_gguf(sys.argv[1], sys.argv[2])\n"
            "except AsrggufError as e: print(e)\n")
    for args, msg in (((d, MM), f"{d}: cannot read decoder file (permission denied)"),
                      ((DEC, m), f"{m}: cannot read audio encoder (mmproj) file (permission denied)")):
        r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=ENV,
                           cwd=ROOT, preexec_fn=_no_dac, timeout=120)
        assert r.stdout == msg + "\n", r.stderr


def test_gguf_missing_or_directory(tmp_path):
    assert one_line(cli("run", "--gguf", tmp_path / "no.gguf", SAMPLE)) == err(f"{tmp_path / 'no.gguf'}: no such decoder file")
    assert one_line(cli("run", "--gguf", DEC, "--mmproj", tmp_path / "no.gguf", SAMPLE)) == \
        err(f"{tmp_path / 'no.gguf'}: no such audio encoder (mmproj) file")
    d = tmp_path / "dir.gguf"
    d.mkdir()
    assert one_line(cli("run", "--gguf", d, SAMPLE), 2) == err(f"Invalid value for '--gguf': File '{d}' is a directory.")


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize("args,msg,code", [
    (["--language", "Klingon"], "unknown language 'Klingon' (see 'asrgguf languages' for the 30 supported names "
                                "and codes)", 1),
    (["--device", "tpu"], "unknown --device 'tpu' (auto, cpu, cuda, mps)", 1),
    (["--dtype", "float8"], "unknown --dtype 'float8' (auto, float32, float16, bfloat16)", 1),
    (["--gguf", DEC], "give either --gguf DECODER.gguf or --model HF_DIR|ORG/NAME|demo", 1),
    (["--mmproj", MM], "--mmproj goes with --gguf", 1),
    (["--overwrite"], "--overwrite goes with --output-dir", 1),
    (["--quiet", "--progress"], "--quiet and --progress contradict each other; give one", 1),
    (["--max-new-tokens", "0"], "Invalid value for '--max-new-tokens': 0 is not in the range x>=1.", 2),
    (["--format", "xml"], "Invalid value for '--format': 'xml' is not one of 'txt', 'json', 'srt', 'vtt', 'rttm'.", 2),
    (["--no-such-option"], "No such option '--no-such-option'.", 2),   # the hidden --bench-tokens never suggested
    (["--qiet"], "No such option '--qiet'. Did you mean '--quiet'?", 2),
])
def test_bad_option(args, msg, code):
    assert one_line(cli("run", "--model", "demo", SAMPLE, *args), code) == err(msg)


def test_no_model_given():
    assert one_line(cli("run", SAMPLE)) == err("give either --gguf DECODER.gguf or --model HF_DIR|ORG/NAME|demo")


def test_unwritable_outputs(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    assert one_line(cli("run", "--model", "demo", SAMPLE, "--output-dir", f), 2) == \
        err(f"Invalid value for '--output-dir': Directory '{f}' is a file.")
    assert one_line(cli("run", "--model", "demo", SAMPLE, "--output-dir", f / "sub")) == \
        err(f"{f / 'sub'}: cannot create output directory (Not a directory)")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    tmp_path.chmod(0o755)
    assert one_line(cli("run", "--model", "demo", SAMPLE, "--output-dir", ro, unprivileged=True)) == \
        err(f"{ro}: output directory is not writable")
    assert one_line(cli("run", "--model", "demo", SAMPLE, "--out-text", ro / "t.txt", unprivileged=True)) == \
        err(f"{ro / 't.txt'}: cannot write (permission denied)")
    assert one_line(cli("run", "--model", "demo", SAMPLE, "--out-text", tmp_path / "no" / "t.txt")) == \
        err(f"{tmp_path / 'no' / 't.txt'}: no such directory {str(tmp_path / 'no')!r}")
    assert one_line(cli("run", "--model", "demo", SAMPLE, "--out-text", ro), 2) == \
        err(f"Invalid value for '--out-text': File '{ro}' is a directory.")


def test_model_directory_missing(tmp_path):
    assert one_line(cli("run", "--model", tmp_path / "nope", SAMPLE)) == \
        err(f"{tmp_path / 'nope'}: no such checkpoint directory (nor a model name such as Qwen/Qwen3-ASR-0.6B)")


# --------------------------------------------------------------------------- stdout closed, Ctrl-C
def test_stdout_closed_early(bad):
    """`asrgguf run ... | head -c1`: one line, exit 1 (no BrokenPipeError traceback)."""
    for args in (["run", "--model", "demo", SAMPLE], ["languages"]):
        p = subprocess.Popen([sys.executable, "-m", "asrgguf.cli", *map(str, args)], env=ENV, cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        p.stdout.close()  # the reader is gone before the first line
        errs = p.stderr.read()
        p.wait(timeout=60)
        assert p.returncode == 1 and errs.splitlines() == [err("standard output was closed; stopped")], errs


def test_ctrl_c_mid_batch_keeps_finished_outputs(tmp_path):
    """SIGINT once the first of five inputs is written (the CLI held there by ASRGGUF_TEST_HOLD): exit 130,
    one line, the finished output whole, no temporary file left."""
    inputs = []
    for i in range(5):
        inputs.append(tmp_path / f"in{i}.wav")
        shutil.copy(SAMPLE, inputs[-1])
    out = tmp_path / "out"
    args = [sys.executable, "-m", "asrgguf.cli", "run", "--model", "demo", *map(str, inputs), "--output-dir",
            str(out), "--format", "json", "--bench-tokens", "120"]
    flag = tmp_path / "held"
    p = subprocess.Popen(args, env={**ENV, "ASRGGUF_TEST_HOLD": f"written:{flag}"}, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(flag, p)   # held right after the first output was renamed into place
        p.send_signal(signal.SIGINT)
        _, errs = p.communicate(timeout=60)
    finally:
        p.kill()
    assert p.returncode == 130, errs
    assert errs.splitlines() == [err("interrupted")], errs
    assert sorted(q.name for q in out.iterdir()) == ["in0.json"]   # whole, and nothing else (no temporary file)
    assert len(json.loads((out / "in0.json").read_text())["token_ids"]) == 120


# --------------------------------------------------------------------------- quantize
def test_quantize_bad_input(tmp_path, ck_gqa):
    assert one_line(cli("quantize", tmp_path / "nope")) == err(f"{tmp_path / 'nope'}: no such checkpoint directory")
    assert one_line(cli("quantize", tmp_path)) == err(f"{tmp_path}: not a Qwen3-ASR checkpoint (config.json is missing)")
    bad = tmp_path / "badjson"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    line = one_line(cli("quantize", bad))
    assert line.startswith(err(f"{bad / 'config.json'}: cannot read config.json: Expecting property name"))
    assert one_line(cli("quantize", ck_gqa, "--outtype", "q3")) == \
        err("unknown --outtype 'q3' (choose from f32, f16, bf16, q8_0, q4_k_m, q5_k_m, q6_k)")
    assert one_line(cli("quantize", ck_gqa, "--mmproj-type", "q4_0")) == \
        err("unknown mmproj type 'q4_0' (choose from f32, f16, q8_0)")
    f = tmp_path / "file"
    f.write_text("x")
    assert one_line(cli("quantize", ck_gqa, "-o", f / "sub")) == \
        err(f"{f / 'sub'}: cannot create output directory (Not a directory)")


def _wait_for(flag: Path, p: subprocess.Popen, limit: float = 300) -> None:
    """Until the process, held by ASRGGUF_TEST_HOLD, has created `flag` (it then waits there for us)."""
    t_end = time.monotonic() + limit
    while not flag.exists():
        assert p.poll() is None, ("exited before reaching the hold", p.returncode, p.stderr.read()[-2000:])
        assert time.monotonic() < t_end, "the hold was not reached"
        time.sleep(0.01)


def _quantize_until_part(ck, out, sig):
    """Start a quantize held (ASRGGUF_TEST_HOLD=part:...) once its first temporary file is open and its
    header written; send `sig` there."""
    flag = out.parent / f"held-{out.name}"
    p = subprocess.Popen([sys.executable, "-m", "asrgguf.cli", "quantize", str(ck), "--outtype", "f32", "-o",
                          str(out), "--quiet"], env={**ENV, "ASRGGUF_TEST_HOLD": f"part:{flag}"}, cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(flag, p)
        assert len(list(out.glob(".*.part"))) == 1   # where the hold is: one temporary file, nothing renamed
        p.send_signal(sig)
        _, errs = p.communicate(timeout=60)
    finally:
        p.kill()
        flag.unlink(missing_ok=True)
    return p.returncode, errs


@pytest.mark.parametrize("sig,code,msg", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")])
def test_quantize_signal_leaves_no_part_files(tmp_path, ck_gqa, sig, code, msg):
    out = tmp_path / "out"
    out.mkdir()
    rc, errs = _quantize_until_part(ck_gqa, out, sig)
    assert rc == code and errs.splitlines() == [err(msg)], errs
    assert list(out.iterdir()) == []  # no temporary file, no half-written GGUF


def test_quantize_after_sigkill_cleans_stale_parts(tmp_path, ck_gqa):
    out = tmp_path / "out"
    out.mkdir()
    rc, _ = _quantize_until_part(ck_gqa, out, signal.SIGKILL)
    assert rc == -signal.SIGKILL and list(out.glob(".*.part"))  # what SIGKILL cannot clean up
    r = cli("quantize", ck_gqa, "--outtype", "f32", "-o", out, "--quiet")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["mmproj-tiny-gqa-f32.gguf", "tiny-gqa-f32.gguf"]
    # a later run stopped mid-write leaves the finished pair as it was
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, errs = _quantize_until_part(ck_gqa, out, signal.SIGTERM)
    assert rc == 143 and errs.splitlines() == [err("terminated")], errs
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


# --------------------------------------------------------------------------- the decoder after a refused context
def test_refused_context_growth_keeps_a_working_decoder(monkeypatch):
    """llama.cpp refusing a bigger context (out of memory) is one AsrggufError; the decoder keeps a context
    of its old size, or, when even that is refused, none (sizes 0) and an error instead of a NULL passed on."""
    import llama_cpp.llama_cpp as L

    from asrgguf.decoder import Decoder, DecoderOptions
    from asrgguf.errors import AsrggufError

    dec = Decoder(DEC, DecoderOptions(n_ctx=256))
    real = L.llama_init_from_model
    ids = dec.tokenize("hello world")
    dec.eval_tokens(ids, 0, logits_last=True)
    want = dec.logits().copy()
    monkeypatch.setattr(L, "llama_init_from_model", lambda m, p: real(m, p) if p.n_ctx <= 256 else None)
    with pytest.raises(AsrggufError, match=r"llama.cpp could not create a context \(n_ctx=4096\)"):
        dec.ensure_ctx(4096)
    assert dec.ctx and (dec.n_ctx, dec.n_seq) == (256, 1)
    dec.clear()
    dec.eval_tokens(ids, 0, logits_last=True)
    assert np.array_equal(dec.logits(), want)
    monkeypatch.setattr(L, "llama_init_from_model", lambda m, p: None)
    with pytest.raises(AsrggufError, match=r"could not create a context \(n_ctx=4096\)"):
        dec.ensure_ctx(4096)
    assert dec.ctx is None and (dec.n_ctx, dec.n_seq) == (0, 0)
    with pytest.raises(AsrggufError, match="no llama.cpp context"):
        dec.eval_tokens(ids, 0, logits_last=True)
    monkeypatch.setattr(L, "llama_init_from_model", real)
    dec.ensure_ctx(64)  # the next request creates one again
    assert dec.ctx and dec.n_ctx == 256
    dec.eval_tokens(ids, 0, logits_last=True)
    assert np.array_equal(dec.logits(), want)
    dec.close()


# --------------------------------------------------------------------------- the Python API
@pytest.fixture(scope="module")
def demo_tr():
    from asrgguf import Transcriber

    with Transcriber.from_pretrained("demo", threads=2) as tr:
        yield tr


def _api_cases():
    import io

    w = np.zeros(16000, np.float32)
    return [
        ("/nonexistent/a.wav", {}, "/nonexistent/a.wav: no such file"),
        (b"", {}, "<bytes>: file is empty"),
        (b"RIFF\x00\x00\x00\x00WAVE" + bytes(100), {}, "<bytes>: cannot decode audio (Invalid data found when "
                                                         "processing input)"),
        (io.StringIO("text"), {}, "<file object>: opened in text mode; open audio files in binary mode ('rb')"),
        (12345, {}, "cannot read audio from a int (give a path, bytes, a binary file object, a 16 kHz array or "
                    "(array, sample_rate))"),
        ((w, 16000, 1), {}, "audio tuple must be (array, sample_rate)"),
        ((w, 0), {}, "audio sample rate 0 is not a rate in Hz (1000 to 1000000)"),
        ((w, 44100.0), {}, "audio sample rate 44100.0 is not a rate in Hz (1000 to 1000000)"),
        (np.full(16000, np.nan, np.float32), {}, "audio array: audio contains NaN or infinite samples"),
        (np.zeros((3, 2, 2), np.float32), {}, "audio array has shape [3, 2, 2]; expected (samples,), "
                                              "(channels, samples) or (samples, channels)"),
        (np.zeros(16000, np.complex64), {}, "audio array has dtype complex64; expected float or integer PCM samples"),
        (np.zeros(0, np.float32), {}, "audio array is empty"),
        (w, {"language": "Klingon"}, "unknown language 'Klingon' (see 'asrgguf languages' for the 30 supported "
                                     "names and codes)"),
        (w, {"parallel": 0}, "parallel must be between 1 and 64 (got 0)"),
        (w, {"piece_seconds": 5}, "piece_seconds must be between 10 and 1200 (got 5)"),
        (w, {"max_new_tokens": 0}, "max_new_tokens must be a positive integer (got 0)"),
        (w, {"timestamps": "char"}, "unknown timestamps 'char' (segment, word)"),
        (w, {"timestamps": "word"}, "word timestamps need an aligner (--aligner, or an Aligner given to the "
                                    "Transcriber)"),
    ]


@pytest.mark.parametrize("i", range(18))
def test_python_api_bad_input(demo_tr, i):
    from asrgguf.errors import AsrggufError

    source, kw, msg = _api_cases()[i]
    with pytest.raises(AsrggufError) as e:
        demo_tr.transcribe_all(source, **kw)
    assert str(e.value) == msg


def test_python_api_channel_layouts_bytes_and_file_objects(demo_tr):
    """(frames, channels) as soundfile.read gives, (channels, frames) as librosa gives, bytes and a binary file
    object: the same ids as the path."""
    want = demo_tr.transcribe_all(str(SAMPLE)).token_ids
    w, sr = sf.read(SAMPLE, dtype="float32")
    st = np.stack([w, w], axis=1)
    assert demo_tr.transcribe_all((st, sr)).token_ids == want
    assert demo_tr.transcribe_all((st.T.copy(), sr)).token_ids == want
    assert demo_tr.transcribe_all(SAMPLE.read_bytes()).token_ids == want
    with open(SAMPLE, "rb") as f:
        assert demo_tr.transcribe_all(f).token_ids == want
