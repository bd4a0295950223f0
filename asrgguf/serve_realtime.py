"""`GET /v1/realtime?intent=transcription`: OpenAI Realtime transcription sessions over a WebSocket.

The protocol is `realtime.RealtimeSession` (pure code: client events in, server events and actions out);
the engine side is a `live.Stream` of the server's one engine, decoded by its one scheduler beside every
upload and every other stream. With `turn_detection` server_vad (the default) the stream's voice
activity detector finds the utterances (speech_started / speech_stopped / committed, then the final's
text as its delta and completed); with `turn_detection: null` each `input_audio_buffer.commit` is an
utterance of its own. Audio work (resampling, the detector) runs in a worker thread per connection,
never on the event loop. A disconnect frees the stream's sequences at once.
"""
from __future__ import annotations

import asyncio
import hmac
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from .live import LIVE_VAD, Stream
from .options import Options
from .realtime import AudioAppended, BufferCleared, BufferCommitted, Configured, RealtimeSession
from .scheduler import error_line

SAMPLE_RATE = 16000


def key_ok(websocket, api_key: str | None) -> bool:
    """The key as the openai client sends it on a WebSocket: `Authorization: Bearer KEY`."""
    if not api_key:
        return True
    auth = websocket.headers.get("authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return hmac.compare_digest(given.encode(), api_key.encode())


class _Connection:
    def __init__(self, ws, engine, cfg):
        self.ws, self.engine, self.cfg = ws, engine, cfg
        self.loop = asyncio.get_running_loop()
        self.session = RealtimeSession(model=cfg.model_id, max_message_bytes=cfg.realtime_max_message_bytes)
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="asrgguf-realtime")
        self.out: asyncio.Queue = asyncio.Queue()
        self.items: dict[int, str] = {}      # utterance -> item id
        self.stream: Stream | None = None
        self.lock = threading.Lock()

    def send_soon(self, events: list[dict]) -> None:
        for e in events:
            self.loop.call_soon_threadsafe(self.out.put_nowait, e)

    # --- the engine's side (worker thread; partials and finals come from the engine thread)
    def new_stream(self) -> None:
        if self.stream is not None:
            self.stream.close()
        c = self.session.config
        td = c.turn_detection
        vad = None if td is None else replace(LIVE_VAD, threshold=td.threshold, min_silence_ms=td.silence_duration_ms,
                                              speech_pad_ms=td.prefix_padding_ms)
        opts = Options.make(language=c.language, context=c.prompt, max_new_tokens=self.cfg.max_new_tokens,
                            piece_seconds=self.cfg.piece_seconds, bench_tokens=self.cfg.bench_tokens)
        self.items = {}
        self.stream = Stream(self.engine.tr, opts, vad, wait=False, on_event=self.on_event, detect=td is not None,
                             max_utterance_seconds=min(30.0, opts.piece_seconds), partials="off")

    def on_event(self, e) -> None:
        with self.lock:   # the worker thread (speech events) and the engine thread (texts) both report
            self._on_event(e)

    def _on_event(self, e) -> None:
        s = self.session
        if s is None:   # closed
            return
        if e.type == "speech_started":
            if s.speech_item_id is None:
                self.send_soon(s.speech_started(int(e.start * SAMPLE_RATE)))
            self.items[e.utterance] = s.speech_item_id
        elif e.type == "speech_stopped":
            item, events = s.speech_stopped(int(e.end * SAMPLE_RATE))
            self.items[e.utterance] = item
            self.send_soon(events)
        # partials are not sent: a delta cannot be taken back, OpenAI's deltas concatenate to the completed
        # text, and the exact final may revise any word of a partial (seen in CI: "And and Tom." then
        # "Anna and Tom went ..."); the final's text goes out as its delta, then completed
        elif e.type == "final" and e.utterance in self.items:
            self.send_soon(s.transcript_completed(self.items.pop(e.utterance), e.text, e.end - e.start))

    def handle(self, message) -> None:
        with self.lock:
            reply = self.session.receive(message)
        self.send_soon(reply.events)
        for a in reply.actions:
            if isinstance(a, Configured):
                self.new_stream()
            elif isinstance(a, AudioAppended):
                self.stream.feed(a.samples)
            elif isinstance(a, BufferCommitted):
                with self.lock:
                    n = self.stream.push_utterance(a.samples, a.start)
                    self.items[n] = a.item_id
            elif isinstance(a, BufferCleared):
                self.new_stream()
        self.engine.sched.wake()

    def close(self) -> None:
        with self.lock:   # no cycle connection <-> stream left for the exit (the resampler's soxr state)
            if self.stream is not None:
                self.stream.close()
            self.stream = self.session = None
        self.pool.shutdown(wait=False)


def realtime_route(cfg, engine):
    """The WebSocket endpoint's handler (Starlette's WebSocketRoute)."""
    from starlette.websockets import WebSocketDisconnect

    async def endpoint(websocket):
        if not key_ok(websocket, cfg.api_key):
            await websocket.close(code=1008)     # refused at the handshake: HTTP 403
            return
        intent = websocket.query_params.get("intent", "transcription")
        if intent != "transcription" or not engine.loaded.is_set():
            await websocket.close(code=1013 if intent == "transcription" else 1008)
            return
        await websocket.accept()
        conn = _Connection(websocket, engine, cfg)
        try:
            await asyncio.get_running_loop().run_in_executor(conn.pool, conn.new_stream)
        except Exception as e:  # noqa: BLE001
            await websocket.send_json(conn.session.error(error_line(e), "server_error", kind="server_error"))
            await websocket.close()
            return
        for e in conn.session.start():
            await websocket.send_json(e)

        async def sender():
            while True:
                await websocket.send_json(await conn.out.get())

        send_task = asyncio.ensure_future(sender())
        try:
            while True:
                msg = await websocket.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                data = msg.get("text") if msg.get("text") is not None else msg.get("bytes")
                try:
                    await asyncio.get_running_loop().run_in_executor(conn.pool, conn.handle, data)
                except Exception as e:  # noqa: BLE001 - this session's failure, as an error event
                    conn.send_soon([conn.session.error(error_line(e), "server_error", kind="server_error")])
        except WebSocketDisconnect:
            pass
        finally:
            conn.close()
            while not conn.out.empty() and not send_task.done():
                await asyncio.sleep(0)
            send_task.cancel()
    return endpoint
