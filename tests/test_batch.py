"""Many inputs: one output per input, written atomically; a killed batch restarts where it stopped."""
import json
import signal
import subprocess
import sys
import time

from conftest import speech_with_silences, write_wav


def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "asrgguf.cli", *map(str, args)], capture_output=True, text=True,
                          **kw)


def test_batch_killed_and_restarted(gguf_pair, ck_gqa, clips, tmp_path):
    dec, _ = gguf_pair(ck_gqa, "q8_0")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(10):
        write_wav(src / f"rec{i:02d}.wav", speech_with_silences(clips, 40, seed=i), 22050)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "asrgguf.cli", "run", "--gguf", str(dec), str(src), "--output-dir", str(out),
            "--format", "json", "--max-new-tokens", "4", "--piece-seconds", "10", "--threads", "2"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and list(out.glob("*.json"))):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    first = sorted(out.glob("*.json"))
    assert 1 <= len(first) < 10, "the batch should have been killed in the middle"
    for f in first:  # whatever exists is whole
        json.loads(f.read_text())
    (out / ".rec09.json.abc123.part").write_text('{"half')  # as a kill mid-write would leave
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{10 - len(first)} done, {len(first)} skipped, 0 failed" in r.stderr
    done = sorted(out.iterdir())
    assert [f.name for f in done] == [f"rec{i:02d}.json" for i in range(10)]  # no temp files left
    for f in done:
        d = json.loads(f.read_text())
        assert d["audio"] == str(src / f.with_suffix(".wav").name) and d["segments"][-1]["end"] > 35
