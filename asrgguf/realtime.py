"""OpenAI's Realtime transcription protocol as plain code: client events in, server events out.

No web framework and no engine here. A transport (the server's WebSocket) hands every client message
to `RealtimeSession.receive` and sends the `events` it returns; the `actions` tell the engine what
happened to the audio (appended 16 kHz samples, a manual commit, a clear, a new configuration). The
engine reports back through `speech_started`, `speech_stopped`, `transcript_delta` and
`transcript_completed`, which return the server events to send. Every malformed client event gets
an `error` event in OpenAI's shape and the session goes on.

Both dialects of the transcription session are accepted, with the field names of the `openai`
package's types: GA `session.update` with `session.type = "transcription"` (`audio.input.format`,
`.transcription`, `.turn_detection`, `.noise_reduction`; answered by `session.updated`) and the beta
`transcription_session.update` (`input_audio_format`, `input_audio_transcription`, `turn_detection`,
`input_audio_noise_reduction`; answered by `transcription_session.updated`). Audio: 16-bit
little-endian mono PCM at 24 kHz (OpenAI's only rate) or, an asrgguf extension, 16 kHz (GA:
`{"type": "audio/pcm", "rate": 16000}`; beta: `input_audio_format` may be that same object).
Audio is resampled to 16 kHz as a file would be (`stream_resample`). Accepted and ignored (nothing
in asrgguf implements them): noise reduction, logprobs in `include`, `create_response`,
`interrupt_response`, `idle_timeout_ms`, `keywords`, `languages`, `delay`.
"""
from __future__ import annotations

import base64
import binascii
import itertools
import json
import secrets
from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLE_RATE, float_range_normalize
from .realtime_config import (ProtocolError, SessionConfig, check_keys, json_type, parse_beta_session,
                              parse_ga_session)
from .stream_resample import StreamResampler

MAX_MESSAGE_BYTES = 15 * 1024 * 1024 + 1024   # OpenAI: an append carries at most 15 MiB of audio
MIN_COMMIT_MS = 100                           # OpenAI refuses to commit less than 100 ms
IDLE_BUFFER_SECONDS = 10                      # server VAD, no speech in progress: audio kept for a manual commit


# --------------------------------------------------------------------------- configuration
@dataclass
class AudioAppended:
    """16 kHz float32 samples appended to the input buffer; `start` is their offset in the session's
    16 kHz samples (as the samples come out of the resampler: not yet peak-normalised)."""
    samples: np.ndarray
    start: int


@dataclass
class BufferCommitted:
    """The client committed the buffer: transcribe `samples` (the 16 kHz audio appended since the last
    commit, normalised as a file of it would be) as item `item_id`; `start` is its session offset."""
    item_id: str
    previous_item_id: str | None
    samples: np.ndarray
    start: int


@dataclass
class BufferCleared:
    """The client dropped the uncommitted audio: forget the open utterance."""


@dataclass
class Configured:
    config: SessionConfig


@dataclass
class Reply:
    events: list[dict] = field(default_factory=list)     # to send, in order
    actions: list = field(default_factory=list)          # for the engine, in order


class RealtimeSession:
    """One WebSocket connection's state: configuration, the input audio buffer, item ids."""

    def __init__(self, model: str = "", max_message_bytes: int = MAX_MESSAGE_BYTES,
                 max_buffer_seconds: float = 1800.0, session_id: str | None = None):
        self.config = SessionConfig(model=model)
        self.max_message_bytes = int(max_message_bytes)
        self.max_buffer_samples = int(max_buffer_seconds * SAMPLE_RATE)
        self.id = session_id or "sess_" + secrets.token_hex(12)
        self._ids = itertools.count(1)
        self._resampler = StreamResampler(self.config.sample_rate)
        self._buffer: list[np.ndarray] = []          # 16 kHz samples since the last commit / clear
        self._buffer_n = 0
        self.n_samples = 0                           # 16 kHz samples appended over the session
        self._buffer_start = 0                       # session offset of the buffer's first sample
        self.previous_item_id: str | None = None     # the last committed item
        self.speech_item_id: str | None = None       # the item of the speech in progress (server VAD)
        self._sent: dict[str, str] = {}              # item id -> text sent as deltas
        self.revisions = 0                           # completed texts that did not extend their deltas
        self.dialect = "ga"

    # --- ids and event shapes
    def _event_id(self) -> str:
        return f"event_{self.id[5:13]}{next(self._ids):06d}"

    def new_item_id(self) -> str:
        return f"item_{self.id[5:13]}{next(self._ids):06d}"

    def _event(self, type_: str, **fields) -> dict:
        return {"type": type_, "event_id": self._event_id(), **fields}

    def error(self, message: str, code: str | None = None, param: str | None = None,
              client_event_id: str | None = None, kind: str = "invalid_request_error") -> dict:
        """An `error` server event (OpenAI's shape)."""
        return self._event("error", error={"type": kind, "code": code, "message": message, "param": param,
                                           "event_id": client_event_id})

    def _turn_detection_object(self) -> dict | None:
        td = self.config.turn_detection
        return None if td is None else {"type": "server_vad", "threshold": td.threshold,
                                        "prefix_padding_ms": td.prefix_padding_ms,
                                        "silence_duration_ms": td.silence_duration_ms}

    def session_object(self) -> dict:
        """The GA transcription session object (as `session.created` / `session.updated` carry it)."""
        c = self.config
        td = self._turn_detection_object()
        return {"type": "transcription", "id": self.id, "object": "realtime.transcription_session",
                "audio": {"input": {"format": {"type": "audio/pcm", "rate": c.sample_rate},
                                    "transcription": {"model": c.model, "language": c.language_code,
                                                      "prompt": c.prompt},
                                    "turn_detection": td, "noise_reduction": None}},
                "include": None}

    def beta_session_object(self) -> dict:
        """The beta transcription session object (as `transcription_session.updated` carries it)."""
        c = self.config
        td = self._turn_detection_object()
        fmt = "pcm16" if c.sample_rate == 24000 else {"type": "audio/pcm", "rate": c.sample_rate}
        return {"id": self.id, "object": "realtime.transcription_session", "input_audio_format": fmt,
                "input_audio_transcription": {"model": c.model, "language": c.language_code, "prompt": c.prompt},
                "turn_detection": td, "input_audio_noise_reduction": None, "modalities": ["text"], "include": None}

    # --- client -> server
    def start(self) -> list[dict]:
        """The first events of a connection."""
        return [self._event("session.created", session=self.session_object())]

    def receive(self, message: str | bytes) -> Reply:
        """One client message (a WebSocket text frame) -> events to send and actions for the engine."""
        size = len(message.encode("utf-8") if isinstance(message, str) else message)
        if size > self.max_message_bytes:
            return Reply([self.error(f"Message of {size} bytes is over this server's limit of "
                                     f"{self.max_message_bytes} bytes; send audio in smaller appends.",
                                     "message_too_large")])
        try:
            ev = json.loads(message)
        except (ValueError, UnicodeDecodeError) as e:
            return Reply([self.error(f"Invalid JSON: {e}.", "invalid_json")])
        if not isinstance(ev, dict):
            return Reply([self.error(f"Invalid event: expected a JSON object, but got {json_type(ev)}.",
                                     "invalid_type")])
        client_id = ev.get("event_id") if isinstance(ev.get("event_id"), str) else None
        kind = ev.get("type")
        handler = self._HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:
            if kind is None:
                msg, code = "Missing required parameter: 'type'.", "missing_required_parameter"
            else:
                msg, code = (f"Invalid value: {kind!r}. Supported values are: "
                             f"{', '.join(repr(k) for k in self._HANDLERS)}."), "invalid_value"
            return Reply([self.error(msg, code, "type", client_id)])
        try:
            return handler(self, ev)
        except ProtocolError as e:
            return Reply([self.error(e.message, e.code, e.param, client_id)])

    def _session_update(self, ev: dict) -> Reply:
        check_keys(ev, {"type", "event_id", "session"}, "")
        if "session" not in ev:
            raise ProtocolError("Missing required parameter: 'session'.", "missing_required_parameter", "session")
        cfg = parse_ga_session(ev["session"], self.config)
        self.dialect = "ga"
        return self._apply(cfg, self._event("session.updated", session=None))

    def _beta_update(self, ev: dict) -> Reply:
        check_keys(ev, {"type", "event_id", "session"}, "")
        if "session" not in ev:
            raise ProtocolError("Missing required parameter: 'session'.", "missing_required_parameter", "session")
        cfg = parse_beta_session(ev["session"], self.config)
        self.dialect = "beta"
        return self._apply(cfg, self._event("transcription_session.updated", session=None))

    def _apply(self, cfg: SessionConfig, event: dict) -> Reply:
        actions = []
        if cfg.sample_rate != self.config.sample_rate:   # the audio so far ends at the old rate
            actions += self._append(self._resampler.flush())
            self._resampler = StreamResampler(cfg.sample_rate)
        self.config = cfg
        event["session"] = self.session_object() if event["type"] == "session.updated" else self.beta_session_object()
        return Reply([event], actions + [Configured(cfg)])

    def _audio_append(self, ev: dict) -> Reply:
        check_keys(ev, {"type", "event_id", "audio"}, "")
        data = ev.get("audio")
        if not isinstance(data, str):
            raise ProtocolError("Missing required parameter: 'audio'." if data is None else
                                f"Invalid type for 'audio': expected a base64 string, but got {json_type(data)}.",
                                "missing_required_parameter" if data is None else "invalid_type", "audio")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError("Invalid value for 'audio': not valid base64.", "invalid_base64", "audio") from None
        if len(raw) % 2:
            raise ProtocolError(f"Invalid value for 'audio': pcm16 audio is a whole number of 16-bit samples, "
                                f"got {len(raw)} bytes.", "invalid_audio", "audio")
        n16 = self._buffer_n + (len(raw) // 2) * SAMPLE_RATE // self.config.sample_rate
        if self.config.turn_detection is None and n16 > self.max_buffer_samples:
            raise ProtocolError(f"The input audio buffer would hold more than {self.max_buffer_samples / SAMPLE_RATE:g} s "
                                f"of audio; commit or clear it.", "input_audio_buffer_full", "audio")
        pcm = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0
        actions = self._append(self._resampler.push(pcm))
        if self.config.turn_detection is not None and self.speech_item_id is None:
            self._drop_buffer(self.n_samples - IDLE_BUFFER_SECONDS * SAMPLE_RATE)   # no speech: keep a little
        return Reply([], actions)

    def _append(self, samples: np.ndarray) -> list:
        if not samples.size:
            return []
        start = self.n_samples
        self._buffer.append(samples)
        self._buffer_n += samples.size
        self.n_samples += samples.size
        return [AudioAppended(samples, start)]

    def _commit(self, ev: dict) -> Reply:
        check_keys(ev, {"type", "event_id"}, "")
        actions = []
        if self.config.turn_detection is None:   # the buffer is an utterance of its own: end the resampled stream there
            actions += self._append(self._resampler.flush())
            self._resampler = StreamResampler(self.config.sample_rate)
        ms = self._buffer_n * 1000 / SAMPLE_RATE
        if ms < MIN_COMMIT_MS:
            return Reply([self.error(f"Error committing input audio buffer: buffer too small. Expected at least "
                                     f"{MIN_COMMIT_MS}ms of audio, but buffer only has {ms:.2f}ms of audio.",
                                     "input_audio_buffer_commit_empty", None, ev.get("event_id"))], actions)
        item = self.speech_item_id or self.new_item_id()
        samples = float_range_normalize(np.concatenate(self._buffer))
        committed = BufferCommitted(item, self.previous_item_id, samples, self._buffer_start)
        events = [self._committed(item)]
        self._drop_buffer(self.n_samples)
        return Reply(events, actions + [committed])

    def _clear(self, ev: dict) -> Reply:
        check_keys(ev, {"type", "event_id"}, "")
        self._drop_buffer(self.n_samples)
        self._resampler = StreamResampler(self.config.sample_rate)   # its pending samples were cleared too
        self.speech_item_id = None
        return Reply([self._event("input_audio_buffer.cleared")], [BufferCleared()])

    _HANDLERS = {"session.update": _session_update, "transcription_session.update": _beta_update,
                 "input_audio_buffer.append": _audio_append, "input_audio_buffer.commit": _commit,
                 "input_audio_buffer.clear": _clear}

    def _drop_buffer(self, upto: int) -> None:
        """Forget buffered samples before session offset `upto`."""
        cut = min(upto, self.n_samples) - (self.n_samples - self._buffer_n)
        if cut >= self._buffer_n:
            self._buffer, self._buffer_n = [], 0
        elif cut > 0:
            rest = np.concatenate(self._buffer)[cut:]
            self._buffer, self._buffer_n = [rest], rest.size
        self._buffer_start = self.n_samples - self._buffer_n

    def _committed(self, item: str) -> dict:
        ev = self._event("input_audio_buffer.committed", previous_item_id=self.previous_item_id, item_id=item)
        self.previous_item_id, self.speech_item_id = item, None
        return ev

    # --- engine -> client
    def speech_started(self, sample: int) -> list[dict]:
        """The engine's VAD found speech starting at session offset `sample` (16 kHz, prefix padding included)."""
        self.speech_item_id = self.new_item_id()
        return [self._event("input_audio_buffer.speech_started", audio_start_ms=sample * 1000 // SAMPLE_RATE,
                            item_id=self.speech_item_id)]

    def speech_stopped(self, sample: int) -> tuple[str, list[dict]]:
        """The engine's VAD ended the speech at session offset `sample`: server VAD commits it.
        Returns the item id and the events (speech_stopped, committed)."""
        item = self.speech_item_id or self.new_item_id()
        self.speech_item_id = item
        stopped = self._event("input_audio_buffer.speech_stopped", audio_end_ms=sample * 1000 // SAMPLE_RATE,
                              item_id=item)
        committed = self._committed(item)
        self._drop_buffer(sample)
        return item, [stopped, committed]

    def transcript_delta(self, item_id: str, text: str) -> list[dict]:
        """The item's text so far that the engine will not revise -> a delta with what is new.
        Deltas only append: text that does not extend what was sent gives no event."""
        sent = self._sent.get(item_id, "")
        if not text.startswith(sent) or len(text) == len(sent):
            return []
        self._sent[item_id] = text
        return [self._event("conversation.item.input_audio_transcription.delta", item_id=item_id,
                            content_index=0, delta=text[len(sent):])]

    def transcript_completed(self, item_id: str, transcript: str, audio_seconds: float) -> list[dict]:
        """The item's final text: the missing delta (when it extends what was sent), then `completed`."""
        sent = self._sent.pop(item_id, "")
        events = []
        if transcript.startswith(sent):
            if len(transcript) > len(sent):
                events.append(self._event("conversation.item.input_audio_transcription.delta", item_id=item_id,
                                          content_index=0, delta=transcript[len(sent):]))
        else:
            self.revisions += 1
        events.append(self._event("conversation.item.input_audio_transcription.completed", item_id=item_id,
                                  content_index=0, transcript=transcript,
                                  usage={"type": "duration", "seconds": round(float(audio_seconds), 3)}))
        return events

    def transcript_failed(self, item_id: str, message: str) -> list[dict]:
        """The engine could not transcribe the item."""
        self._sent.pop(item_id, None)
        return [self._event("conversation.item.input_audio_transcription.failed", item_id=item_id, content_index=0,
                            error={"type": "server_error", "code": None, "message": message, "param": None})]
