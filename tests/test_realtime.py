"""OpenAI Realtime transcription protocol (asrgguf/realtime.py): event shapes checked against the
`openai` package's own models, audio against librosa / `asrgguf run`'s reader, every malformed
client event answered by an `error` event while the session goes on."""
import base64
import json

import librosa
import numpy as np
import pytest
import soundfile as sf
from openai.types.beta.realtime import TranscriptionSessionUpdate, TranscriptionSessionUpdatedEvent
from openai.types.realtime import (ConversationItemInputAudioTranscriptionCompletedEvent,
                                   ConversationItemInputAudioTranscriptionDeltaEvent, InputAudioBufferAppendEvent,
                                   InputAudioBufferClearedEvent, InputAudioBufferCommittedEvent,
                                   InputAudioBufferSpeechStartedEvent, InputAudioBufferSpeechStoppedEvent,
                                   RealtimeErrorEvent, SessionCreatedEvent, SessionUpdatedEvent, SessionUpdateEvent)

from asrgguf import audio
from asrgguf.realtime import AudioAppended, BufferCleared, BufferCommitted, Configured, RealtimeSession
from asrgguf.realtime_config import TurnDetection
from asrgguf.stream_resample import StreamResampler

SERVER_MODELS = {
    "session.created": SessionCreatedEvent, "session.updated": SessionUpdatedEvent,
    "input_audio_buffer.committed": InputAudioBufferCommittedEvent,
    "input_audio_buffer.cleared": InputAudioBufferClearedEvent,
    "input_audio_buffer.speech_started": InputAudioBufferSpeechStartedEvent,
    "input_audio_buffer.speech_stopped": InputAudioBufferSpeechStoppedEvent,
    "conversation.item.input_audio_transcription.delta": ConversationItemInputAudioTranscriptionDeltaEvent,
    "conversation.item.input_audio_transcription.completed": ConversationItemInputAudioTranscriptionCompletedEvent,
    "error": RealtimeErrorEvent,
}


def valid(ev: dict) -> dict:
    """The event parses strictly as the openai package's model of its type (and survives JSON)."""
    ev = json.loads(json.dumps(ev))
    if ev["type"] == "transcription_session.updated":   # beta; the REST-only client_secret is not sent here
        ev2 = {**ev, "session": {**ev["session"], "client_secret": {"value": "", "expires_at": 0}}}
        TranscriptionSessionUpdatedEvent.model_validate(ev2)
    else:
        checked = ev
        fmt = ev.get("session", {}).get("audio", {}).get("input", {}).get("format")
        if fmt == {"type": "audio/pcm", "rate": 16000}:   # asrgguf's one extension: OpenAI knows 24 kHz only
            checked = json.loads(json.dumps(ev).replace('"rate": 16000', '"rate": 24000'))
        SERVER_MODELS[ev["type"]].model_validate(checked)
    return ev


def send(sess, ev: dict):
    r = sess.receive(json.dumps(ev))
    for e in r.events:
        valid(e)
    return r


def pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()


def append(data: bytes) -> dict:
    ev = {"type": "input_audio_buffer.append", "audio": base64.b64encode(data).decode()}
    InputAudioBufferAppendEvent.model_validate(ev)
    return ev


GA_UPDATE = {"type": "session.update", "event_id": "c1", "session": {
    "type": "transcription",
    "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
                        "transcription": {"model": "qwen3-asr", "language": "en", "prompt": "names: Ada"},
                        "turn_detection": {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200,
                                           "silence_duration_ms": 700},
                        "noise_reduction": {"type": "near_field"}}},
    "include": ["item.input_audio_transcription.logprobs"]}}


def error_of(r, code):
    assert [e["type"] for e in r.events] == ["error"] and r.actions == []
    err = r.events[0]["error"]
    assert err["type"] == "invalid_request_error" and err["code"] == code, err
    return err


@pytest.fixture
def speech24(clip5):
    """About 5 s of espeak speech as 24 kHz pcm16 bytes (what OpenAI's clients send)."""
    wav, sr = sf.read(clip5, dtype="float32")
    return pcm16(librosa.resample(wav, orig_sr=sr, target_sr=24000) * 0.9)


def test_session_created_and_ga_update():
    s = RealtimeSession(model="demo")
    (created,) = s.start()
    created = valid(created)
    assert created["session"]["type"] == "transcription"
    assert created["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
    assert created["session"]["audio"]["input"]["turn_detection"]["silence_duration_ms"] == 500
    SessionUpdateEvent.model_validate(GA_UPDATE)
    r = send(s, GA_UPDATE)
    (upd,) = r.events
    assert upd["type"] == "session.updated"
    inp = upd["session"]["audio"]["input"]
    assert inp["transcription"] == {"model": "qwen3-asr", "language": "en", "prompt": "names: Ada"}
    assert inp["turn_detection"] == {"type": "server_vad", "threshold": 0.6, "prefix_padding_ms": 200,
                                     "silence_duration_ms": 700}
    (cfg,) = [a.config for a in r.actions if isinstance(a, Configured)]
    assert (cfg.language, cfg.prompt, cfg.model, cfg.sample_rate) == ("English", "names: Ada", "qwen3-asr", 24000)
    assert cfg.turn_detection == TurnDetection(0.6, 200, 700)
    # only the fields present change; turn_detection null turns server VAD off; 16 kHz (asrgguf extension)
    r = send(s, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 16000}, "turn_detection": None}}}})
    cfg = r.actions[-1].config
    assert cfg.turn_detection is None and cfg.sample_rate == 16000 and cfg.language == "English"
    assert r.events[0]["session"]["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 16000}


def test_beta_transcription_session_update():
    s = RealtimeSession()
    ev = {"type": "transcription_session.update", "session": {
        "input_audio_format": "pcm16",
        "input_audio_transcription": {"model": "gpt-4o-transcribe", "language": "de", "prompt": ""},
        "turn_detection": {"type": "server_vad", "threshold": 0.3, "prefix_padding_ms": 300,
                           "silence_duration_ms": 800},
        "input_audio_noise_reduction": None, "include": []}}
    TranscriptionSessionUpdate.model_validate(ev)
    r = send(s, ev)
    (upd,) = r.events
    assert upd["type"] == "transcription_session.updated"
    assert upd["session"]["input_audio_format"] == "pcm16"
    assert upd["session"]["turn_detection"]["silence_duration_ms"] == 800
    cfg = r.actions[-1].config
    assert (cfg.language, cfg.sample_rate, cfg.turn_detection.threshold) == ("German", 24000, 0.3)
    r = send(s, {"type": "transcription_session.update", "session": {"turn_detection": None}})
    assert r.actions[-1].config.turn_detection is None


def test_manual_commit_gives_the_samples_asrgguf_run_reads(speech24, tmp_path):
    """24 kHz pcm16 in uneven appends, then commit: the committed 16 kHz samples equal what `asrgguf run`
    reads from a 24 kHz wav of the same bytes (audio.load), and the appended blocks concatenate to
    librosa.resample of the whole (bit for bit)."""
    s = RealtimeSession()
    send(s, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}}})
    appended, pos, sizes = [], 0, [4800, 2, 9598, 480, 48000]
    i = 0
    while pos < len(speech24):
        n = sizes[i % len(sizes)]
        r = send(s, append(speech24[pos:pos + n]))
        assert r.events == []
        appended += [a.samples for a in r.actions if isinstance(a, AudioAppended)]
        pos, i = pos + n, i + 1
    r = send(s, {"type": "input_audio_buffer.commit", "event_id": "c9"})
    appended += [a.samples for a in r.actions if isinstance(a, AudioAppended)]
    (ev,) = r.events
    assert ev["type"] == "input_audio_buffer.committed" and ev["previous_item_id"] is None
    (com,) = [a for a in r.actions if isinstance(a, BufferCommitted)]
    assert com.item_id == ev["item_id"] and com.start == 0
    pcm = np.frombuffer(speech24, "<i2").astype(np.float32) / 32768.0
    ref = librosa.resample(pcm, orig_sr=24000, target_sr=16000)
    np.testing.assert_array_equal(np.concatenate(appended), ref)
    path = tmp_path / "u.wav"
    sf.write(path, np.frombuffer(speech24, "<i2"), 24000, subtype="PCM_16")
    np.testing.assert_array_equal(com.samples, audio.load(str(path)))
    # the next item chains to this one
    send(s, append(speech24[:9600]))
    r = send(s, {"type": "input_audio_buffer.commit"})
    assert r.events[0]["previous_item_id"] == ev["item_id"] and r.actions[-1].start == ref.size


def test_16k_audio_passes_through():
    s = RealtimeSession()
    send(s, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 16000}}}}})
    x = (np.sin(np.arange(3200) / 7) * 0.5 * 32767).astype("<i2")
    r = send(s, append(x.tobytes()))
    (a,) = r.actions
    np.testing.assert_array_equal(a.samples, x.astype(np.float32) / 32768.0)


def test_clear():
    s = RealtimeSession()
    send(s, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}}})
    send(s, append(b"\x10\x00" * 4800))
    r = send(s, {"type": "input_audio_buffer.clear"})
    assert [e["type"] for e in r.events] == ["input_audio_buffer.cleared"]
    assert isinstance(r.actions[0], BufferCleared)
    err = error_of(send(s, {"type": "input_audio_buffer.commit", "event_id": "e7"}), "input_audio_buffer_commit_empty")
    assert err["message"] == ("Error committing input audio buffer: buffer too small. Expected at least 100ms of "
                              "audio, but buffer only has 0.00ms of audio.")
    assert err["event_id"] == "e7"


def test_server_vad_events_and_deltas():
    s = RealtimeSession()
    send(s, append(b"\x00\x00" * 24000))
    (st,) = [valid(e) for e in s.speech_started(16000)]
    assert st["audio_start_ms"] == 1000
    item, evs = s.speech_stopped(40000)
    stopped, committed = (valid(e) for e in evs)
    assert stopped["audio_end_ms"] == 2500 and stopped["item_id"] == committed["item_id"] == st["item_id"] == item
    deltas = []
    for text in ["Hel", "Hello wor", "Hello wo", "Hello world"]:   # "Hello wo" does not extend: no event
        deltas += [valid(e)["delta"] for e in s.transcript_delta(item, text)]
    assert deltas == ["Hel", "lo wor", "ld"]
    evs = [valid(e) for e in s.transcript_completed(item, "Hello world.", 1.5)]
    assert [e["type"] for e in evs] == ["conversation.item.input_audio_transcription.delta",
                                        "conversation.item.input_audio_transcription.completed"]
    assert "".join(deltas + [evs[0]["delta"]]) == evs[1]["transcript"] == "Hello world."
    assert evs[1]["usage"] == {"type": "duration", "seconds": 1.5} and s.revisions == 0
    # a second utterance; its final revises a sent delta: completed carries the exact text
    item2, _ = s.speech_stopped(80000)
    assert s.previous_item_id == item2 != item
    s.transcript_delta(item2, "Good by")
    evs = s.transcript_completed(item2, "Goodbye.", 1.0)
    assert [e["type"] for e in evs] == ["conversation.item.input_audio_transcription.completed"]
    assert s.revisions == 1


def errors_for(messages, **kw):
    s = RealtimeSession(**kw)
    out = []
    for m in messages:
        r = s.receive(m if isinstance(m, (str, bytes)) else json.dumps(m))
        for e in r.events:
            valid(e)
        out.append(r)
    return s, out


@pytest.mark.parametrize("message, code, text", [
    ("{not json", "invalid_json", "Invalid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)."),
    ("[1, 2]", "invalid_type", "Invalid event: expected a JSON object, but got an array."),
    ({"event_id": "x"}, "missing_required_parameter", "Missing required parameter: 'type'."),
    ({"type": "response.create"}, "invalid_value", None),
    ({"type": "input_audio_buffer.append", "audio": "AAA*"}, "invalid_base64", "Invalid value for 'audio': not valid base64."),
    ({"type": "input_audio_buffer.append", "audio": "AAAA AAAA"}, "invalid_base64", None),
    ({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}, "invalid_audio",
     "Invalid value for 'audio': pcm16 audio is a whole number of 16-bit samples, got 3 bytes."),
    ({"type": "input_audio_buffer.append", "audio": 12}, "invalid_type", None),
    ({"type": "input_audio_buffer.append"}, "missing_required_parameter", "Missing required parameter: 'audio'."),
    ({"type": "input_audio_buffer.append", "audio": "", "extra": 1}, "unknown_parameter", "Unknown parameter: 'extra'."),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcmu"}}}}}, "unsupported_audio_format", None),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 44100}}}}}, "unsupported_audio_format",
     "Unsupported sample rate 44100 at 'session.audio.input.format.rate': 24000 or 16000."),
    ({"type": "transcription_session.update", "session": {"input_audio_format": "g711_ulaw"}},
     "unsupported_audio_format", None),
    ({"type": "session.update", "session": {"type": "realtime"}}, "invalid_value", None),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "turn_detection": {"type": "semantic_vad"}}}}}, "invalid_value", None),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "turn_detection": {"type": "server_vad", "threshold": 1.5}}}}}, "invalid_value",
     "Invalid value for 'session.audio.input.turn_detection.threshold': expected a number from 0 to 1, got 1.5."),
    ({"type": "session.update", "session": {"type": "transcription", "audio": {"input": {
        "transcription": {"language": "klingon"}}}}}, "invalid_value", None),
    ({"type": "session.update", "session": {"type": "transcription", "voice": "alloy"}}, "unknown_parameter",
     "Unknown parameter: 'session.voice'."),
    ({"type": "session.update"}, "missing_required_parameter", "Missing required parameter: 'session'."),
])
def test_bad_client_events_get_error_events_and_the_session_goes_on(message, code, text):
    s, (bad, good) = errors_for([message, append(b"\x01\x00" * 2400)])
    err = error_of(bad, code)
    if text is not None:
        assert err["message"] == text
    assert s.config.sample_rate == 24000 and s.config.turn_detection is not None   # unchanged by a refused update
    assert good.events == [] and sum(a.samples.size for a in good.actions) > 0     # the next append works


def test_unknown_event_type_lists_the_supported_ones():
    _, (r,) = errors_for([{"type": "conversation.item.create", "event_id": "ev1"}])
    err = error_of(r, "invalid_value")
    assert err["param"] == "type" and err["event_id"] == "ev1"
    assert err["message"].startswith("Invalid value: 'conversation.item.create'. Supported values are: "
                                     "'session.update', 'transcription_session.update', 'input_audio_buffer.append'")


def test_oversize_message_and_full_buffer():
    big = json.dumps(append(b"\x00\x00" * 6000))
    s, (r, ok) = errors_for([big, append(b"\x00\x00" * 2400)], max_message_bytes=10000)
    err = error_of(r, "message_too_large")
    assert err["message"] == (f"Message of {len(big)} bytes is over this server's limit of 10000 bytes; "
                              f"send audio in smaller appends.")
    assert ok.actions   # goes on
    s = RealtimeSession(max_buffer_seconds=1.0)
    send(s, {"type": "session.update", "session": {"type": "transcription", "audio": {"input": {"turn_detection": None}}}})
    assert send(s, append(b"\x00\x00" * 24000)).actions
    error_of(send(s, append(b"\x00\x00" * 2400)), "input_audio_buffer_full")
    assert [e["type"] for e in send(s, {"type": "input_audio_buffer.commit"}).events] == ["input_audio_buffer.committed"]


def test_stream_resampler_equals_librosa():
    rng = np.random.default_rng(3)
    for sr in (24000, 48000, 22050, 8000):
        x = (rng.standard_normal(sr * 2 + 11) * 0.3).astype(np.float32)
        r, outs, pos = StreamResampler(sr), [], 0
        for n in [480, 1, 2399, 7, 4800] * 100:
            if pos >= x.size:
                break
            outs.append(r.push(x[pos:pos + n]))
            pos += n
            assert r.n_out <= int(np.ceil(pos * 16000 / sr))
        outs.append(r.flush())
        np.testing.assert_array_equal(np.concatenate(outs), librosa.resample(x, orig_sr=sr, target_sr=16000))
