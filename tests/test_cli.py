"""`asrgguf run` / `languages`: output formats and one-line errors (exit 1, no traceback)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import _make_ck


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "asrgguf.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def pair(gguf_pair, ck_gqa):
    return gguf_pair(ck_gqa, "q8_0")


def test_run_txt_and_json(pair, clip5, tmp_path):
    dec, mm = pair
    r = cli("run", "--gguf", dec, clip5, "--format", "json", "--max-new-tokens", "8", "--threads", "2")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert set(d) >= {"language", "text", "raw", "token_ids", "timings", "model"}
    assert d["model"]["mmproj"] == str(mm)  # found beside the decoder
    assert (d["model"]["encoder_device"], d["model"]["decoder_device"]) == ("cpu", "cpu")  # a CPU build here
    assert len(d["token_ids"]) == 8
    assert set(d["timings"]) >= {"load", "audio", "features", "encoder", "prefill", "decode", "decode_tokens_per_s"}
    out = tmp_path / "o.txt"
    r2 = cli("run", "--gguf", dec, "--mmproj", mm, clip5, "--max-new-tokens", "8", "--out-text", out)
    assert r2.returncode == 0 and r2.stdout == d["text"] + "\n" and out.read_text() == d["text"] + "\n"


def test_languages_command():
    r = cli("languages")
    assert r.returncode == 0 and r.stdout.splitlines()[1] == "English\ten\taligner" and len(r.stdout.splitlines()) == 30


def test_exit_skips_teardown_after_what_a_normal_exit_does():
    """cli_main ends the process with os._exit (the interpreter's teardown skipped) once Python's and C's stdio
    are flushed and the atexit handlers have run, keeping the exit code; with another thread still running the
    exit is the normal one (the thread finishes)."""
    code = ("import atexit, ctypes, os, sys, threading\n"
            "real = os._exit\n"
            "def fake(n): os.write(1, b'os._exit %d\\n' % n); real(n)\n"
            "os._exit = fake\n"
            "atexit.register(lambda: print('atexit ran'))\n"
            "ctypes.CDLL(None).printf(b'c stdio\\n')\n"
            "if sys.argv[1] == 'thread':\n"   # alive until the interpreter's shutdown begins, then done
            "    ev = threading.Event(); threading._register_atexit(ev.set)\n"
            "    threading.Thread(target=lambda: (ev.wait(60), print('thread done'))).start()\n"
            "from asrgguf.cli import cli_main\n"
            "sys.argv = ['asrgguf'] + sys.argv[2:]\n"
            "cli_main()\n")

    def run(*args):
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    r = run("-", "languages")
    lines = r.stdout.splitlines()
    assert r.returncode == 0, r.stderr
    assert "English\ten\taligner" in lines and len(lines) == 33, lines
    assert lines[-2:] == ["atexit ran", "os._exit 0"] and "c stdio" in lines, lines
    r = run("-", "run")
    assert r.returncode == 2 and "Missing argument" in r.stderr, (r.returncode, r.stderr)
    assert r.stdout.splitlines()[-2:] == ["atexit ran", "os._exit 2"], r.stdout
    r = run("thread", "languages")
    assert r.returncode == 0 and r.stdout.splitlines()[-2:] == ["thread done", "atexit ran"], r.stdout[-200:]


def truncated(src, dst, n_bytes):
    """dst: the first n_bytes of src (negative: all but the last -n_bytes)."""
    dst.write_bytes(open(src, "rb").read()[:n_bytes])
    return dst


def error_of(r):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    return r.stderr


def test_missing_and_bad_audio_keep_going(pair, clip5, tmp_path):
    dec, _ = pair
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    r = cli("run", "--gguf", dec, tmp_path / "missing.wav", empty, junk, clip5, "--max-new-tokens", "4")
    err = error_of(r)
    lines = err.splitlines()
    assert lines[0] == f"asrgguf: error: {tmp_path / 'missing.wav'}: no such file"
    assert lines[1] == f"asrgguf: error: {empty}: file is empty"
    assert lines[2].startswith(f"asrgguf: error: {junk}: cannot decode audio")
    assert len(lines) == 3 and len(r.stdout.splitlines()) == 1  # the good file was still transcribed


def test_no_usable_input_loads_no_model(pair, tmp_path):
    """Unusable inputs are reported before the model loads; with none left, the model is never loaded (the
    truncated decoder's own error would show otherwise). A decoder whose header is wrong still fails first."""
    bad = truncated(pair[0], tmp_path / "trunc-q8_0.gguf", Path(pair[0]).stat().st_size // 2)
    err = error_of(cli("run", "--gguf", bad, "--mmproj", pair[1], tmp_path / "missing.wav"))
    assert err == f"asrgguf: error: {tmp_path / 'missing.wav'}: no such file\n"
    err = error_of(cli("run", "--gguf", pair[1], tmp_path / "missing.wav"))
    assert err == (f"asrgguf: error: {pair[1]}: decoder architecture is 'clip', expected 'qwen3vl' "
                   f"(a Qwen3-ASR text decoder GGUF)\n")


def test_silence_is_transcribed(pair, tmp_path):
    path = tmp_path / "silence.wav"
    subprocess.run(["sox", "-n", "-r", "16000", "-c", "1", str(path), "trim", "0", "2"], check=True)
    r = cli("run", "--gguf", pair[0], path, "--max-new-tokens", "4", "--format", "json")
    assert r.returncode == 0 and json.loads(r.stdout)["timings"]["audio_seconds"] == 2.0


def test_truncated_decoder(pair, clip5, tmp_path):
    bad = truncated(pair[0], tmp_path / "trunc-q8_0.gguf", Path(pair[0]).stat().st_size // 2)
    err = error_of(cli("run", "--gguf", bad, "--mmproj", pair[1], clip5))
    assert err.startswith(f"asrgguf: error: {bad}: llama.cpp could not load the decoder")
    assert len(err.splitlines()) == 1


def test_truncated_mmproj(pair, clip5, tmp_path):
    bad = truncated(pair[1], tmp_path / "mmproj-trunc.gguf", -5000)
    err = error_of(cli("run", "--gguf", pair[0], "--mmproj", bad, clip5))
    assert err.startswith(f"asrgguf: error: {bad}: truncated GGUF file") or \
        err.startswith(f"asrgguf: error: {bad}: corrupt or truncated GGUF file")


def test_not_gguf(pair, clip5):
    err = error_of(cli("run", "--gguf", clip5, clip5))
    assert err == f"asrgguf: error: {clip5}: not a GGUF file\n"


def test_wrong_architecture(pair, clip5):
    err = error_of(cli("run", "--gguf", pair[1], "--mmproj", pair[1], clip5))
    assert err == (f"asrgguf: error: {pair[1]}: decoder architecture is 'clip', expected 'qwen3vl' "
                   f"(a Qwen3-ASR text decoder GGUF)\n")
    err = error_of(cli("run", "--gguf", pair[0], "--mmproj", pair[0], clip5))
    assert err == f"asrgguf: error: {pair[0]}: not a Qwen3-ASR audio encoder (mmproj projector None, expected 'qwen3a')\n"


def test_mismatched_pair(pair, gguf_pair, data_dir, clip5):
    narrow = _make_ck(data_dir, "tiny32", size="tiny32")
    _, mm32 = gguf_pair(narrow, "q8_0")
    err = error_of(cli("run", "--gguf", pair[0], "--mmproj", mm32, clip5))
    assert err == (f"asrgguf: error: {mm32}: encoder output width 32 does not match the decoder's 64 "
                   f"({pair[0]}): not a matching pair\n")


def test_unknown_language(pair, clip5):
    err = error_of(cli("run", "--gguf", pair[0], clip5, "--language", "Klingon"))
    assert err == ("asrgguf: error: unknown language 'Klingon' (see 'asrgguf languages' for the 30 supported "
                   "names and codes)\n")


def test_no_mmproj_beside(pair, clip5, tmp_path):
    lone = tmp_path / "lone-q8_0.gguf"
    shutil.copy(pair[0], lone)
    err = error_of(cli("run", "--gguf", lone, clip5))
    assert err == f"asrgguf: error: {lone}: no mmproj-*.gguf beside the decoder; pass --mmproj\n"


def test_model_dir_is_quantized_once(ck_gqa, clip5, tmp_path):
    env_cache = tmp_path / "cache"
    import os

    env = dict(os.environ, ASRGGUF_CACHE=str(env_cache))
    args = [sys.executable, "-m", "asrgguf.cli", "run", "--model", str(ck_gqa), str(clip5), "--max-new-tokens", "4"]
    r1 = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r1.returncode == 0, r1.stderr
    dec = env_cache / ck_gqa.name / f"{ck_gqa.name}-q8_0.gguf"
    mtime = dec.stat().st_mtime_ns
    r2 = subprocess.run(args, capture_output=True, text=True, env=env)
    assert r2.returncode == 0 and r2.stdout == r1.stdout and dec.stat().st_mtime_ns == mtime


# --- long audio, subtitles, batches (issue 5)
def test_srt_vtt_to_stdout_parse(pair, clip20):
    import io

    import srt
    import webvtt

    r = cli("run", "--gguf", pair[0], clip20, "--format", "srt", "--max-new-tokens", "6", "--piece-seconds", "10")
    assert r.returncode == 0, r.stderr
    subs = list(srt.parse(r.stdout))
    assert subs and subs[0].start.total_seconds() == 0.0 and len(subs) >= 2  # about 20 s in 10-s pieces
    r = cli("run", "--gguf", pair[0], clip20, "--format", "vtt", "--max-new-tokens", "6", "--piece-seconds", "10")
    assert r.returncode == 0, r.stderr
    assert len(webvtt.from_buffer(io.StringIO(r.stdout)).captions) == len(subs)
    assert r.stderr == ""  # no progress bar when stderr is not a terminal


def test_output_dir_skip_overwrite_summary(pair, clip5, clip20, tmp_path):
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    out = tmp_path / "out"
    base = ["run", "--gguf", pair[0], clip5, clip20, junk, "--output-dir", out, "--format", "json",
            "--max-new-tokens", "4"]
    r = cli(*base)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0].startswith(f"asrgguf: error: {junk}: cannot decode audio")
    assert lines[-1].startswith("asrgguf: 2 done, 0 skipped, 1 failed; 0.00") and "h of audio in" in lines[-1]
    assert sorted(p.name for p in out.iterdir()) == ["clip20.json", "clip5.json"]
    mtime = (out / "clip5.json").stat().st_mtime_ns
    r = cli(*base[:5], "--output-dir", out, "--format", "json")
    assert r.returncode == 0 and "0 done, 2 skipped, 0 failed" in r.stderr
    assert (out / "clip5.json").stat().st_mtime_ns == mtime
    r = cli(*base[:5], "--output-dir", out, "--format", "json", "--overwrite", "--max-new-tokens", "4", "--quiet")
    assert r.returncode == 0 and r.stderr == "" and (out / "clip5.json").stat().st_mtime_ns != mtime
    d = json.loads((out / "clip5.json").read_text())
    assert d["segments"][0]["start"] == 0.0  # json times are rounded to the millisecond
    assert d["segments"][-1]["end"] == pytest.approx(d["timings"]["audio_seconds"], abs=5e-4)


def test_globs_dirs_and_progress(pair, clip5, tmp_path):
    d = tmp_path / "in" / "sub"
    d.mkdir(parents=True)
    for name in ("a.wav", "b.wav"):
        shutil.copy(clip5, d / name)
    out = tmp_path / "out"
    r = cli("run", "--gguf", pair[0], tmp_path / "in", str(tmp_path / "in" / "*" / "a.wav"),
            str(tmp_path / "nothing" / "*.wav"), "--output-dir", out, "--max-new-tokens", "4", "--progress")
    assert r.returncode == 1  # the glob that matches nothing
    assert f"asrgguf: error: {tmp_path / 'nothing' / '*.wav'}: no files match" in r.stderr
    assert "s audio" in r.stderr and "RTF" in r.stderr  # the bar, asked for
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.txt")) == ["sub/a.txt", "sub/b.txt"]
    assert "2 done, 0 skipped, 1 failed" in r.stderr  # a.wav named twice runs once


def test_parallel_pieces_same_segments(pair, clip20):
    """--parallel 3: the same segments, ids and times as piece by piece."""
    dec, _ = pair
    base = ("run", "--gguf", dec, clip20, "--format", "json", "--max-new-tokens", "12", "--piece-seconds", "10")
    r1, r3 = cli(*base), cli(*base, "--parallel", "3")
    assert r1.returncode == 0 and r3.returncode == 0, (r1.stderr, r3.stderr)
    s1, s3 = json.loads(r1.stdout)["segments"], json.loads(r3.stdout)["segments"]
    assert len(s1) >= 2
    assert [(s["start"], s["end"], s["token_ids"]) for s in s1] == [(s["start"], s["end"], s["token_ids"]) for s in s3]
    bad = cli(*base, "--parallel", "0")  # a usage error: click's exit code 2, one message
    assert bad.returncode == 2 and bad.stderr.splitlines()[-1] == \
        "asrgguf: error: Invalid value for '--parallel': 0 is not in the range 1<=x<=64."
