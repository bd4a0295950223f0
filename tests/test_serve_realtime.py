"""`GET /v1/realtime?intent=transcription` on the real server (a subprocess, the demo model) with real
WebSocket clients (`websockets`): utterances found by the server's VAD, deltas that concatenate to the
completed text, 8 clients at once each with their own texts, error events for bad input (the session goes
on), a wrong key refused at the handshake."""
from __future__ import annotations

import asyncio
import base64
import json

import numpy as np
import pytest
import websockets

from conftest import espeak
from test_serve import KEY, running

SR = 16000


@pytest.fixture(scope="module")
def server():
    with running("--model", "demo", "--parallel", 4, "--api-key", KEY, "--max-upload-mb", 1) as s:
        yield s


@pytest.fixture(scope="module")
def speech16(data_dir):
    import support.demo_speech as speech

    from asrgguf import audio

    clip = audio.load(str(espeak(data_dir / "rt0.wav", speech.SAMPLE_TEXT, speech.TEST_VOICE)))
    return clip, speech.SAMPLE_TEXT


def pcm(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


async def session(server, audio: bytes, extra: list | None = None, key=KEY, settle: float = 0.0) -> list[dict]:
    """Configure 16-kHz pcm16 with server VAD, send `audio` in 100-ms appends (and `extra` messages), then
    1.5 s of silence; return the events up to the last completed transcript (or a quiet second)."""
    url = server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        events = [json.loads(await ws.recv())]
        await ws.send(json.dumps({"type": "transcription_session.update", "session": {
            "input_audio_format": {"type": "audio/pcm", "rate": SR},
            "input_audio_transcription": {"model": "qwen3-asr", "language": "en"},
            "turn_detection": {"type": "server_vad", "threshold": 0.5, "silence_duration_ms": 500,
                               "prefix_padding_ms": 200}}}))
        for m in extra or []:
            await ws.send(m)
        tail = pcm(np.zeros(int(1.5 * SR), np.float32))
        for i in range(0, len(audio + tail), 3200):
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode((audio + tail)[i:i + 3200]).decode()}))
        while True:
            try:
                events.append(json.loads(await asyncio.wait_for(ws.recv(), 60 if settle == 0 else settle)))
            except asyncio.TimeoutError:
                return events
            done = [e for e in events if e["type"].endswith("transcription.completed")]
            started = [e for e in events if e["type"] == "input_audio_buffer.speech_started"]
            if started and len(done) == len(started):
                return events


def texts(events):
    return [e["transcript"] for e in events if e["type"] == "conversation.item.input_audio_transcription.completed"]


def test_utterances_deltas_and_completed(server, speech16):
    clip, text = speech16
    gap = np.zeros(SR, np.float32)
    events = asyncio.run(session(server, pcm(np.concatenate([gap, clip, gap, clip]))))
    kinds = [e["type"] for e in events]
    assert kinds[:2] == ["session.created", "transcription_session.updated"]
    assert texts(events) == [text, text]
    for item in {e["item_id"] for e in events if "item_id" in e}:
        mine = [e for e in events if e.get("item_id") == item]
        assert [e["type"] for e in mine][:3] == ["input_audio_buffer.speech_started",
                                                 "input_audio_buffer.speech_stopped", "input_audio_buffer.committed"]
        deltas = [e["delta"] for e in mine if e["type"].endswith(".delta")]
        # the final's text is the one delta: a partial's words may be revised and a delta cannot be
        assert deltas == [mine[-1]["transcript"]]
    starts = [e["audio_start_ms"] for e in events if e["type"] == "input_audio_buffer.speech_started"]
    assert 700 <= starts[0] <= 1000 and starts[1] > starts[0] + 1000 * clip.size / SR


def test_eight_clients_at_once_each_get_their_own(server, speech16):
    clip, text = speech16
    gap = np.zeros(SR // 2, np.float32)
    one, two = pcm(np.concatenate([gap, clip])), pcm(np.concatenate([gap, clip, 2 * gap, clip]))

    async def all_():
        return await asyncio.gather(*[session(server, one if i % 2 else two) for i in range(8)])
    results = asyncio.run(all_())
    assert [texts(r) for r in results] == [[text] * (1 if i % 2 else 2) for i in range(8)]
    assert server.health()["requests"] == 0


def test_error_events_and_the_session_goes_on(server, speech16):
    clip, text = speech16
    bad = ["not json", json.dumps({"type": "input_audio_buffer.explode"}),
           json.dumps({"type": "input_audio_buffer.append", "audio": "***"}),
           json.dumps({"type": "transcription_session.update", "session": {"input_audio_format": "g711_ulaw"}}),
           json.dumps({"type": "input_audio_buffer.append", "audio": "A" * (1024 * 1024 + 8)})]
    events = asyncio.run(session(server, pcm(clip), extra=bad))
    errors = [e["error"]["code"] for e in events if e["type"] == "error"]
    assert errors[:3] == ["invalid_json", "invalid_value", "invalid_base64"]
    assert len(errors) == 5 and errors[4] == "message_too_large", errors
    assert texts(events) == [text]                   # the session went on


def test_wrong_key_refused_at_handshake(server):
    url = server.url.replace("http://", "ws://") + "/v1/realtime?intent=transcription"

    async def go():
        async with websockets.connect(url, additional_headers={"Authorization": "Bearer wrong"}):
            pass
    with pytest.raises(websockets.exceptions.InvalidStatus) as e:
        asyncio.run(go())
    assert e.value.response.status_code == 403


def test_the_official_openai_client(server, speech16):
    """The `openai` package's own realtime connection (GA dialect: `session.update` with session.type
    "transcription", pcm16 at 24 kHz as OpenAI sends it): the server's events parse as its models, the
    deltas of each item concatenate to its completed text, and each completed text is what `transcribe`
    gives for that utterance's audio (the 24-kHz input as asrgguf reads it, cut at the reported times)."""
    import threading

    import librosa
    import openai

    from asrgguf import Transcriber, audio

    clip, text = speech16
    gap = np.zeros(SR, np.float32)
    x16 = np.concatenate([gap, clip, gap, clip, 1.5 * gap])
    x24 = librosa.resample(x16, orig_sr=SR, target_sr=24000)
    raw = pcm(x24)
    client = openai.OpenAI(api_key=KEY, base_url=server.url + "/v1")
    events = []
    with client.realtime.connect(model="qwen3-asr", extra_query={"intent": "transcription"}) as conn:
        guard = threading.Timer(120, conn.close)     # a hung server fails the test instead of blocking it
        guard.start()
        try:
            conn.session.update(session={"type": "transcription", "audio": {"input": {
                "format": {"type": "audio/pcm", "rate": 24000},
                "transcription": {"model": "qwen3-asr", "language": "en"},
                "turn_detection": {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 200,
                                   "silence_duration_ms": 500}}}})
            for i in range(0, len(raw), 4800):   # 100 ms of 24-kHz pcm16
                conn.input_audio_buffer.append(audio=base64.b64encode(raw[i:i + 4800]).decode())
            while sum(e.type == "conversation.item.input_audio_transcription.completed" for e in events) < 2:
                events.append(conn.recv())
        finally:
            guard.cancel()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["session.created", "session.updated"]
    assert "error" not in kinds
    completed = [e for e in events if e.type == "conversation.item.input_audio_transcription.completed"]
    assert [e.transcript for e in completed] == [text, text]
    for e in completed:
        deltas = [d.delta for d in events if d.type.endswith("transcription.delta") and d.item_id == e.item_id]
        assert deltas and "".join(deltas) == e.transcript
    # each completed text is `transcribe` on its utterance's audio (times as the server reported them)
    x = audio.prepare(np.frombuffer(raw, "<i2").astype(np.float32) / 32768, 24000)
    starts = [e.audio_start_ms for e in events if e.type == "input_audio_buffer.speech_started"]
    ends = [e.audio_end_ms for e in events if e.type == "input_audio_buffer.speech_stopped"]
    assert len(starts) == len(ends) == 2
    with Transcriber.from_pretrained("demo", threads=1) as tr:
        for a, b, e in zip(starts, ends, completed):
            assert tr.transcribe_all(x[a * 16:b * 16], language="English").text == e.transcript
