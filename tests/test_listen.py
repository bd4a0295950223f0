"""`asrgguf listen`: on a terminal the partial line is rewritten in place and finals are printed as lines;
jsonl prints every event; --realtime paces a file; raw PCM on stdin; srt of the finals with --output."""
from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from conftest import espeak

ROOT = Path(__file__).resolve().parents[1]
SR = 16000


def make_talk(data_dir) -> tuple[Path, float]:
    import support.demo_speech as speech

    from asrgguf import audio

    clip = audio.load(str(espeak(data_dir / "listen0.wav", speech.SAMPLE_TEXT, speech.TEST_VOICE)))
    wav = np.concatenate([np.zeros(SR, np.float32), clip, np.zeros(2 * SR, np.float32), clip,
                          np.zeros(SR, np.float32)])
    path = data_dir / "listen.wav"
    sf.write(path, wav, SR, subtype="FLOAT")
    return path, wav.size / SR


def listen(*args, stdin=None):
    return subprocess.run([sys.executable, "-m", "asrgguf.cli", "listen", "--model", "demo", "--threads", "2",
                           "--language", "English", *map(str, args)], capture_output=True, timeout=300,
                          cwd=ROOT, input=stdin)


def test_jsonl_events_and_srt_output(data_dir, tmp_path):
    import support.demo_speech as speech

    path, _ = make_talk(data_dir)
    r = listen(path, "--format", "jsonl", "--output", tmp_path / "o.srt")
    assert r.returncode == 0, r.stderr
    events = [json.loads(ln) for ln in r.stdout.decode().splitlines()]
    finals = [e for e in events if e["type"] == "final"]
    assert [e["text"] for e in finals] == [speech.SAMPLE_TEXT] * 2 and [e["utterance"] for e in finals] == [0, 1]
    assert [e["type"] for e in events if e["type"].startswith("speech")] == ["speech_started", "speech_stopped"] * 2
    assert {e["type"] for e in events} == {"speech_started", "partial", "speech_stopped", "final"}
    import srt

    cues = list(srt.parse((tmp_path / "o.srt").read_text()))
    assert [c.content.replace("\n", " ") for c in cues] == [speech.SAMPLE_TEXT] * 2
    assert [round(c.start.total_seconds(), 3) for c in cues] == [e["start"] for e in finals]
    # the same audio as raw 16-bit PCM at 22.05 kHz on standard input: the same finals
    raw = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", "22050",
                          "-"], capture_output=True, check=True).stdout
    r = listen("-", "--raw-rate", 22050, "--format", "jsonl", stdin=raw)
    assert r.returncode == 0, r.stderr
    assert [json.loads(ln)["text"] for ln in r.stdout.decode().splitlines()
            if json.loads(ln)["type"] == "final"] == [speech.SAMPLE_TEXT] * 2


def test_terminal_rewrites_partials_and_realtime_paces(data_dir):
    import support.demo_speech as speech

    path, seconds = make_talk(data_dir)
    master, slave = pty.openpty()
    t0 = time.monotonic()
    p = subprocess.Popen([sys.executable, "-m", "asrgguf.cli", "listen", "--model", "demo", "--threads", "2",
                          "--language", "English", "--realtime", str(path)], stdout=slave, stderr=subprocess.PIPE,
                         cwd=ROOT)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert p.wait(300) == 0, p.stderr.read()
    wall = time.monotonic() - t0
    text = out.decode()
    assert wall >= seconds                                  # paced: not faster than the audio itself
    assert "\r\x1b[K" in text                               # the partial line rewritten in place
    lines = [ln.split("\r\x1b[K")[-1] for ln in text.replace("\r\n", "\n").split("\n") if ln.strip("\r\x1b[K")]
    finals = [ln for ln in lines if ln.startswith("[")]
    assert [ln.split("] ", 1)[1] for ln in finals] == [speech.SAMPLE_TEXT] * 2


def test_listen_errors_are_one_line(tmp_path):
    r = listen(tmp_path / "missing.wav")
    assert r.returncode == 1 and r.stderr.decode().count("\n") == 1 and b"Traceback" not in r.stderr
    r = listen("-", "--output", tmp_path / "x.doc", stdin=b"")
    assert r.stderr.decode() == f"asrgguf: error: --output {tmp_path / 'x.doc'}: unknown format (.txt, .json, " \
                                f".srt, .vtt)\n"
