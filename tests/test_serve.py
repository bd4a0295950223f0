"""`asrgguf serve`: the real server (a subprocess on a free 127.0.0.1 port) called with the official `openai`
client for every response format and streaming, and with plain HTTP (httpx) for every error code; texts,
times and token ids equal `asrgguf run` on the same files, alone and with requests decoded together."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from conftest import espeak

ROOT = Path(__file__).resolve().parents[1]
KEY = "test-key-123"
NEW_TOKENS = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "asrgguf.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


class Server:
    def __init__(self, *args, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "asrgguf.cli", "serve", *map(str, args), "--host",
                                      "127.0.0.1", "--port", str(self.port), "--threads", "2", "--log-level",
                                      "warning"], stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, **(env or {})})
        self.first_health: list[int] = []   # the /health codes seen while starting

    def wait_ready(self, timeout: float = 120.0) -> "Server":
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.output()}")
            try:
                code = httpx.get(self.url + "/health", timeout=5).status_code
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            self.first_health.append(code)
            if code == 200:
                return self
            time.sleep(0.05)
        raise AssertionError(f"server not ready in {timeout} s: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def health(self) -> dict:
        return httpx.get(self.url + "/health", timeout=10).json()

    def client(self, key=KEY) -> OpenAI:
        return OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, timeout=120)

    def post(self, files=None, data=None, key=KEY, **kw) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.post(self.url + "/v1/audio/transcriptions", files=files, data=data, headers=headers,
                          timeout=120, **kw)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


@contextlib.contextmanager
def running(*args):
    s = Server(*args)
    try:
        yield s.wait_ready()
    finally:
        s.stop()


@pytest.fixture(scope="module")
def pair(gguf_pair, ck_gqa):
    return gguf_pair(ck_gqa, "f32")   # f32: batched sequences give each piece's ids exactly (test_transcribe)


@pytest.fixture(scope="module")
def tiny(pair):
    """The tiny checkpoint served with 3 sequences, 10 s pieces, a key and a 1 MiB upload limit."""
    with running("--gguf", pair[0], "--parallel", "3", "--piece-seconds", 10, "--max-new-tokens", NEW_TOKENS,
                 "--api-key", KEY, "--max-upload-mb", 1) as s:
        yield s


def run_json(pair_or_model, path, *extra) -> dict:
    src = ["--model", "demo"] if pair_or_model == "demo" else ["--gguf", pair_or_model[0]]
    r = cli("run", *src, path, "--format", "json", "--threads", "2", *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_formats_and_stream_equal_asrgguf_run(tiny, pair, clip20):
    """json, text, srt, vtt, verbose_json and a stream of clip20 (3 pieces of 10 s) through the official client
    give the text, pieces, times and token ids of `asrgguf run` with the same settings."""
    ref = run_json(pair, clip20, "--piece-seconds", 10, "--max-new-tokens", NEW_TOKENS)
    assert len(ref["segments"]) == 3
    c = tiny.client()

    def create(**kw):
        with open(clip20, "rb") as f:
            return c.audio.transcriptions.create(model="whisper-1", file=f, **kw)

    assert create().text == ref["text"]
    assert create(response_format="text") == ref["text"] + "\n"
    srt = cli("run", "--gguf", pair[0], clip20, "--format", "srt", "--piece-seconds", 10, "--max-new-tokens",
              NEW_TOKENS, "--threads", "2")
    assert create(response_format="srt") == srt.stdout
    vtt = create(response_format="vtt")
    assert vtt.startswith("WEBVTT\n") and vtt.count(" --> ") == srt.stdout.count(" --> ")
    v = create(response_format="verbose_json", timestamp_granularities=["segment"])
    assert (v.text, v.language, v.duration) == (ref["text"], ref["language"].lower(), ref["duration"])
    assert [(s.id, s.start, s.end, s.text, s.tokens) for s in v.segments] == \
        [(s["id"], s["start"], s["end"], s["text"], s["token_ids"]) for s in ref["segments"]]
    assert v.words is None
    events = list(create(stream=True))
    assert [e.type for e in events] == ["transcript.text.delta"] * sum(bool(s["text"]) for s in ref["segments"]) + \
        ["transcript.text.done"]
    assert "".join(e.delta for e in events[:-1]) == events[-1].text == ref["text"]
    assert events[-1].usage.output_tokens == len(ref["token_ids"])
    assert events[-1].usage.input_tokens == ref["timings"]["prompt_tokens"]
    # the language forced as `run --language` forces it (ISO code or name)
    fr = run_json(pair, clip20, "--piece-seconds", 10, "--max-new-tokens", NEW_TOKENS, "--language", "French")
    assert create(language="fr").text == fr["text"]
    assert [m.id for m in c.models.list().data] == ["tiny-gqa-f32"]


def test_concurrent_requests_each_equal_alone(tiny, pair, ck_gqa, clips, clip5, data_dir):
    """6 requests at once on 3 sequences (pieces of different requests decoded together, a freed sequence taken
    by the next piece): each gets the token ids it gets alone, which are the Python API's (`transcribe`), the
    official implementation's for the one-piece clip, and `asrgguf run`'s text (one scheduler behind all)."""
    files = [data_dir / f"sent{i}.wav" for i in range(len(clips))] + [clip5]
    assert len(files) == 6
    c = tiny.client()

    def one(p):
        with open(p, "rb") as f:
            v = c.audio.transcriptions.create(model="qwen3-asr", file=f, response_format="verbose_json")
        return v.text, [s.tokens for s in v.segments]

    alone = [one(p) for p in files]
    out: dict = {}
    threads = [threading.Thread(target=lambda i=i, p=p: out.__setitem__(i, one(p))) for i, p in enumerate(files)]
    # a bad upload among them gets its own 400 and disturbs none of the others
    threads.append(threading.Thread(target=lambda: out.__setitem__("bad", tiny.post(
        {"file": ("junk.wav", b"RIFF" + b"\x00" * 5000)}).status_code)))
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert [out.get(i) for i in range(len(files))] == alone
    assert out["bad"] == 400
    r = cli("run", "--gguf", pair[0], *files, "--piece-seconds", 10, "--max-new-tokens", NEW_TOKENS, "--threads", 2)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [t for t, _ in alone]
    assert tiny.health()["requests"] == 0
    from asrgguf import Transcriber
    from support.reference import official_model, official_tokens, official_wav

    with Transcriber.from_gguf(pair[0], threads=2) as tr:
        for p, (_, ids) in zip(files, alone):
            segments, _ = tr.transcribe(str(p), piece_seconds=10, max_new_tokens=NEW_TOKENS)
            assert [s.token_ids for s in segments] == ids, p
    assert alone[-1][1] == [official_tokens(official_model(ck_gqa), official_wav(str(clip5)), max_new_tokens=NEW_TOKENS)]


def error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()["error"]
    assert body["code"] == code and body["type"] and body["message"], body
    return body["message"]


def test_error_codes(tiny, clip5, tmp_path):
    wav = clip5.read_bytes()
    ok = {"file": ("a.wav", wav)}
    # 401: no key, wrong key (also on /v1/models); /health needs none
    assert "missing API key" in error(tiny.post(ok, key=None), 401, "invalid_api_key")
    assert error(tiny.post(ok, key="wrong"), 401, "invalid_api_key") == "incorrect API key provided"
    assert httpx.get(tiny.url + "/v1/models", timeout=10).status_code == 401
    assert httpx.get(tiny.url + "/health", timeout=10).status_code == 200
    # 400: undecodable, empty, too short, no file
    msg = error(tiny.post({"file": ("junk.mp3", b"\x00\x01garbage" * 100)}), 400, "invalid_audio")
    assert msg.startswith("junk.mp3: cannot decode audio")
    assert error(tiny.post({"file": ("e.wav", b"")}), 400, "invalid_audio") == "e.wav: file is empty"
    short = tmp_path / "short.wav"
    import numpy as np
    import soundfile as sf
    sf.write(short, np.zeros(100, np.float32), 16000)
    assert "too short" in error(tiny.post({"file": ("s.wav", short.read_bytes())}), 400, "invalid_audio")
    assert "'file'" in error(tiny.post(data={"model": "whisper-1"}), 400, "missing_file")
    # 400: unknown language, response_format, temperature; word timestamps without an aligner; prompt too long
    assert "unknown language 'xx'" in error(tiny.post(ok, {"language": "xx"}), 400, "unknown_language")
    assert "'xml'" in error(tiny.post(ok, {"response_format": "xml"}), 400, "invalid_response_format")
    assert "only 0" in error(tiny.post(ok, {"temperature": "0.7"}), 400, "invalid_temperature")
    assert tiny.post(ok, {"temperature": "0", "response_format": "text"}).status_code == 200
    r = tiny.post(ok, {"response_format": "verbose_json", "timestamp_granularities[]": "word"})
    assert "aligner" in error(r, 400, "word_timestamps_unavailable")
    assert "too long" in error(tiny.post(ok, {"prompt": "word " * 3000}), 400, "prompt_too_long")
    # 404: a model name that is neither the served one nor generic
    assert "gpt-9" in error(tiny.post(ok, {"model": "gpt-9"}), 404, "model_not_found")
    for name in ("tiny-gqa-f32", "Qwen/Qwen3-ASR-0.6B", "whisper-1", ""):
        assert tiny.post(ok, {"model": name, "response_format": "text"}).status_code == 200, name
    # 413: over --max-upload-mb 1, with and without a Content-Length the server can trust
    big = {"file": ("big.wav", b"\x00" * (1024 * 1024 + 10))}
    assert "limit" in error(tiny.post(big), 413, "file_too_large")
    boundary = "b0undary"
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
               f"Content-Type: audio/wav\r\n\r\n").encode() + b"\x00" * (1024 * 1024 + 10) + \
        f"\r\n--{boundary}--\r\n".encode()
    r = httpx.post(tiny.url + "/v1/audio/transcriptions", content=iter([payload[i:i + 65536]
                                                                        for i in range(0, len(payload), 65536)]),
                   headers={"Authorization": f"Bearer {KEY}",
                            "Content-Type": f"multipart/form-data; boundary={boundary}"}, timeout=60)
    assert "limit" in error(r, 413, "file_too_large")
    # the server is unharmed: a good request still answers
    assert tiny.post(ok, {"response_format": "text"}).status_code == 200
    assert tiny.health()["requests"] == 0


def test_loading_busy_and_disconnect(pair, clip5, clip20):
    """503 while the model loads (the port already open); with 1 sequence and a queue of 1, a third request is
    429; clients that go away free their sequences at once, not when their decode would have ended."""
    hold = Path(tempfile.mkdtemp()) / "load"
    n = 600    # tokens a piece: a's third piece is still decoding when its client leaves, however slow the machine
    s = Server("--gguf", pair[0], "--parallel", 1, "--max-queue", 1, "--piece-seconds", 10, "--bench-tokens", n,
               env={"ASRGGUF_SERVE_HOLD_LOAD": str(hold)})
    try:
        # the port is open and the model not loaded until `hold` exists: the first answer is a 503
        t_end = time.monotonic() + 60
        while True:
            try:
                r = httpx.post(s.url + "/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")}, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < t_end and s.proc.poll() is None, s.output()
                time.sleep(0.02)
        error(r, 503, "model_loading")
        assert httpx.get(s.url + "/health", timeout=5).status_code == 503
        hold.touch()
        s.wait_ready()
        long_wav = clip20.read_bytes()   # 3 pieces of n tokens, one after the other on the one sequence
        clients = []

        def open_stream():
            c = httpx.Client(timeout=120)
            req = c.build_request("POST", s.url + "/v1/audio/transcriptions",
                                  files={"file": ("c.wav", long_wav)}, data={"stream": "true"})
            resp = c.send(req, stream=True)
            clients.append((c, resp))
            assert resp.status_code == 200
            return resp.iter_lines()

        def next_delta(lines) -> float:
            for line in lines:
                if line.startswith("data: "):
                    assert json.loads(line[6:])["type"] == "transcript.text.delta"
                    return time.monotonic()
            raise AssertionError("stream ended")
        a = open_stream()
        open_stream()
        t_end = time.monotonic() + 30
        while s.health()["requests"] < 2:
            assert time.monotonic() < t_end
            time.sleep(0.05)
        next_delta(a)                 # a's first piece is done, two to go
        error(s.post({"file": ("c.wav", clip5.read_bytes())}, key=None), 429, "queue_full")
        next_delta(a)                 # a's second piece: b waits (a, the older, holds the one sequence)
        t0 = time.monotonic()
        for c, resp in clients:
            resp.close()
            c.close()
        while s.health()["requests"]:
            assert time.monotonic() - t0 < 30, "disconnected requests were not freed"
            time.sleep(0.02)
        # freed, not decoded to their end (the server's own counts): 6 pieces of n tokens had they run on;
        # when the clients left, a's two pieces were done and at most one more piece had begun
        totals = s.health()["totals"]
        assert totals["generated_tokens"] < 3 * n and totals["requests_done"] == 0, totals
        assert totals["cancelled_jobs"] <= 1, totals
        # the server goes on: a new request gets every token
        v = s.post({"file": ("c.wav", clip5.read_bytes())}, key=None, data={"response_format": "verbose_json"}).json()
        assert [len(seg["tokens"]) for seg in v["segments"]] == [n]
    finally:
        s.stop()


def test_demo_model_equals_run(clip5):
    """The demo model (real English speech): the server's text equals `asrgguf run --model demo`."""
    from asrgguf import demo

    with running("--model", "demo", "--parallel", 2) as s:
        c = OpenAI(base_url=s.url + "/v1", api_key="none", max_retries=0, timeout=120)
        for p in (demo.SAMPLE, clip5):
            ref = run_json("demo", p)
            with open(p, "rb") as f:
                assert c.audio.transcriptions.create(model="demo", file=f).text == ref["text"]
            with open(p, "rb") as f:
                events = list(c.audio.transcriptions.create(model="whisper-1", file=f, stream=True))
            assert events[-1].text == ref["text"] and ref["text"]


def test_serve_command_errors(tmp_path, monkeypatch):
    r = cli("serve")
    assert r.returncode == 1 and r.stderr == "asrgguf: error: give either --gguf DECODER.gguf or --model HF_DIR|ORG/NAME|demo\n"
    r = cli("serve", "--gguf", tmp_path / "none.gguf")
    assert r.returncode == 1 and r.stderr == f"asrgguf: error: {tmp_path / 'none.gguf'}: no such decoder file\n"
    from asrgguf import serve
    from asrgguf.errors import AsrggufError

    real = serve.importlib.util.find_spec
    monkeypatch.setattr(serve.importlib.util, "find_spec", lambda m: None if m == "uvicorn" else real(m))
    with pytest.raises(AsrggufError, match=r"^asrgguf serve needs uvicorn: pip install 'asrgguf\[serve\]'$"):
        serve.check_dependencies()


def test_word_timestamps_with_an_aligner(gguf_pair, ck_gqa, ck_al_mha, clip20):
    """`serve --aligner`: verbose_json with timestamp_granularities=["word"] gives the words of
    `asrgguf run --timestamps word` on the same file."""
    dec, _ = gguf_pair(ck_gqa, "q8_0")
    al_dec, _ = gguf_pair(ck_al_mha, "q8_0")
    ref = run_json((dec, None), clip20, "--timestamps", "word", "--aligner", al_dec, "--max-new-tokens", NEW_TOKENS,
                   "--piece-seconds", 10)
    ref_words = [(w["text"], w["start"], w["end"]) for s in ref["segments"] for w in s["words"]]
    assert len(ref_words) >= 5
    with running("--gguf", dec, "--aligner", al_dec, "--max-new-tokens", NEW_TOKENS, "--piece-seconds", 10) as s:
        with open(clip20, "rb") as f:
            r = s.client().audio.transcriptions.create(model="whisper-1", file=f, response_format="verbose_json",
                                                       timestamp_granularities=["word", "segment"])
        got = [(w.word, round(w.start, 3), round(w.end, 3)) for w in r.words]
        assert got == ref_words and r.text == ref["text"]
