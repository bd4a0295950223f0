"""`asrgguf serve`: an OpenAI-compatible `/v1/audio/transcriptions` server over ONE Transcriber.

Layout (the asyncio side never touches llama.cpp or torch):

* the ASGI app (Starlette, run by uvicorn; uploads parsed by python-multipart) checks each request
  (key, size, fields), hands its bytes to the scheduler and waits for events on an asyncio queue;
* per request, a reader thread decodes the upload into pieces (`Transcriber.open_pieces`, the cuts of
  `asrgguf run`), at most two pieces ahead;
* one scheduler thread loads and owns the Transcriber and ONE `generate.Batcher` of `--parallel`
  sequences: whenever a sequence is free it encodes the next ready piece (`make_job`) of the request
  holding the fewest sequences (the oldest on ties) and prefills it; every `step` advances all active
  pieces, of whatever requests, by one token; a finished piece's sequence is taken at the next step
  (continuous batching). Segments reach their request in order, so a stream sends one
  `transcript.text.delta` per piece as soon as it and the pieces before it are done.

A request that fails (bad audio, a too-long prompt) gets its own error and frees its sequences; a
client that goes away has its sequences freed (`Batcher.cancel`) at the next step. At most
`parallel + max_queue` requests are inside at once; one more gets 429.

Model names: `model` may be empty, the served model's id (GET /v1/models: the demo name, the
checkpoint directory's name or the decoder file's stem, or --served-model-name), or a generic
speech-to-text name (whisper-1, gpt-4o-transcribe, gpt-4o-mini-transcribe, anything starting with
qwen3-asr, with or without an owner/ prefix, in any case): all mean the one loaded model. Any other
name is a 404 `model_not_found`, as OpenAI and vLLM answer.
"""
from __future__ import annotations

import asyncio
import hmac
import importlib.util
import io
import json
import math
import os
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable

from . import formats
from .errors import AsrggufError
from .languages import normalize_language
from .loading import EngineConfig
from .options import Options
from .output import join_texts
from .pieces import DEFAULT_PIECE_SECONDS
from .results import Transcription, TranscriptionInfo
from .realtime import MAX_MESSAGE_BYTES
from .scheduler import Request, Scheduler, ThreadFeed, error_line
from .serve_realtime import realtime_route
from .vad import model_path as vad_model_path

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GENERIC_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
READ_AHEAD = 2          # pieces a reader decodes ahead of the decoder, per request
PROMPT_ALLOWANCE = 256  # context positions per sequence kept for a request's prompt (its `prompt` field)


def check_dependencies() -> None:
    """One-line error when the serve extra is missing."""
    missing = [pkg for mod, pkg in (("starlette", "starlette"), ("uvicorn", "uvicorn"),
                                    ("python_multipart", "python-multipart"))
               if importlib.util.find_spec(mod) is None]
    if missing:
        raise AsrggufError(f"asrgguf serve needs {', '.join(missing)}: pip install 'asrgguf[serve]'")


@dataclass
class ServeConfig:
    engine: EngineConfig = field(default_factory=EngineConfig)   # which model, where (loaded by the engine thread)
    parallel: int = 4
    max_queue: int = 64
    max_upload_mb: float = 25.0          # OpenAI's own limit
    api_key: str | None = None
    piece_seconds: float = DEFAULT_PIECE_SECONDS
    bench_tokens: int | None = None      # benchmarks only: every piece generates exactly N tokens
    served_model_name: str | None = None

    @property
    def model_id(self) -> str:
        return self.served_model_name or self.engine.model_id

    @property
    def realtime_max_message_bytes(self) -> int:
        """A Realtime WebSocket message's limit: the upload limit (OpenAI's: 15 MiB of audio an append)."""
        return min(MAX_MESSAGE_BYTES, int(self.max_upload_mb * 1024 * 1024))

    @property
    def max_new_tokens(self) -> int:
        return self.engine.max_new_tokens


class ApiError(Exception):
    """An error answered as OpenAI does: {"error": {"message", "type", "code"}} with an HTTP status."""

    TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
             413: "invalid_request_error", 429: "rate_limit_error", 500: "server_error", 503: "server_error"}

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.TYPES.get(self.status, "server_error"),
                          "param": None, "code": self.code}}


def api_error(e: BaseException) -> ApiError:
    """A request's failure as the HTTP error it answers: bad audio 400, anything else 500."""
    if isinstance(e, ApiError):
        return e
    if isinstance(e, AsrggufError):
        return ApiError(400, str(e), "invalid_audio")
    return ApiError(500, f"transcription failed: {error_line(e)}", "internal_error")


def model_accepted(name: str | None, model_id: str) -> bool:
    if not name:
        return True
    n = name.strip().lower()
    base = n.rsplit("/", 1)[-1]
    return n == model_id.lower() or base == model_id.lower() or base in GENERIC_MODELS or base.startswith("qwen3-asr")


# ----------------------------------------------------------------------------- the engine thread
class EngineThread:
    """Loads the engine and pumps its one `Scheduler` in one thread; requests come in through `submit`
    (any thread), each upload read by a thread of its own (`ThreadFeed`), at most READ_AHEAD pieces ahead."""

    def __init__(self, cfg: ServeConfig, on_load_failed: Callable[[str], None] | None = None,
                 load: Callable[[], object] | None = None):
        self.cfg = cfg
        self.on_load_failed = on_load_failed
        self._load = load or cfg.engine.load
        self.tr = None
        self.sched: Scheduler | None = None
        self.loaded = threading.Event()
        self.load_error: str | None = None
        self.load_s = 0.0
        self._lock = threading.Lock()
        self._inside = 0                            # submitted and not finished
        self._left: set[int] = set()                # requests already counted out
        self.thread = threading.Thread(target=self._main, name="asrgguf-engine", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        if self.sched is not None:
            self.sched.stop()
        if self.thread.is_alive():
            self.thread.join(timeout)

    @property
    def capacity(self) -> int:
        return self.cfg.parallel + self.cfg.max_queue

    @property
    def n_ctx(self) -> int:
        return self.sched.n_ctx if self.sched else 0

    def counts(self) -> dict:
        with self._lock:
            d = {"requests": self._inside, "capacity": self.capacity, "parallel": self.cfg.parallel}
        st = {k: round(v, 3) if isinstance(v, float) else v for k, v in dict(self.sched.stats).items()}
        st["mean_rows_per_step"] = round(st["step_rows"] / st["steps"], 2) if st["steps"] else 0.0
        return {**d, "totals": st}

    def submit(self, source, opts, emit) -> Request:
        """A request for an upload (a BytesIO named after it); emit(kind, payload) gets "ready" (its first
        piece is read), "segment", "done" and "error", from other threads."""
        with self._lock:
            if self._inside >= self.capacity:
                raise ApiError(429, f"the server is busy: {self._inside} requests are being transcribed or waiting "
                                    f"(--parallel {self.cfg.parallel} + --max-queue {self.cfg.max_queue}); "
                                    f"retry later", "queue_full")
            self._inside += 1

        holder: list[Request] = []

        def released(kind, payload):
            if kind in ("done", "error"):
                self._leave_once(holder[0])
            emit(kind, payload)
        sched, tr = self.sched, self.tr
        feed = ThreadFeed(lambda: tr.open_pieces(source, opts.piece_seconds, vad=opts.vad)[2], READ_AHEAD,
                          on_first=lambda: emit("ready", None), wake=sched.wake)
        holder.append(Request(feed, opts, emit=released, max_active=self.cfg.parallel))
        return sched.submit(holder[0])

    def cancel(self, req: Request) -> None:
        """The client went away: its sequences are freed at the next step."""
        if not req.finished:
            self.sched.cancel(req)
            if req.error is None:
                self._leave_once(req)

    def _leave_once(self, req: Request) -> None:
        with self._lock:
            if req.id not in self._left:
                self._left.add(req.id)
                self._inside -= 1

    def _main(self) -> None:
        t0 = time.perf_counter()
        hold = os.environ.get("ASRGGUF_SERVE_HOLD_LOAD")   # tests: the load waits for this file to exist
        while hold and not os.path.exists(hold):
            time.sleep(0.02)
        try:
            self.tr = self._load()
            self.sched = self.tr.scheduler
            base = Options.make(max_new_tokens=self.cfg.max_new_tokens, piece_seconds=self.cfg.piece_seconds,
                                bench_tokens=self.cfg.bench_tokens)
            self.sched.reserve(self.cfg.parallel, self.tr.positions_needed(base) + PROMPT_ALLOWANCE)
        except BaseException as e:  # noqa: BLE001 - reported as one line, the server then exits
            self.load_error = str(e).splitlines()[0] if str(e) else type(e).__name__
            if not isinstance(e, AsrggufError):
                self.load_error = f"{type(e).__name__}: {self.load_error}"
            if self.on_load_failed:
                self.on_load_failed(self.load_error)
            return
        self.load_s = time.perf_counter() - t0
        self.loaded.set()
        try:
            self.sched.run_forever()
        finally:
            self.sched.drain(ApiError(503, "the server is shutting down", "shutting_down"))
            self.tr.close()


# ----------------------------------------------------------------------------- responses
def _transcription(segs: list, duration: float, name: str, opts, model: dict) -> Transcription:
    return Transcription.collect(segs, TranscriptionInfo(name, opts.language, duration, opts, model))


def verbose_json(res, words: bool) -> dict:
    """OpenAI's verbose_json: the pieces as segments (exact start/end; no logprob figures: the model's
    greedy decode keeps none), words when asked for and an aligner gave them."""
    d = {"task": "transcribe", "language": res.language.lower(), "duration": round(res.duration, 3),
         "text": res.text,
         "segments": [_with_speaker({"id": s.id, "seek": int(round(s.start * 100)), "start": round(s.start, 3),
                                     "end": round(s.end, 3), "text": s.text, "tokens": list(s.token_ids),
                                     "temperature": 0.0}, s) for s in res.segments],
         "usage": {"type": "duration", "seconds": round(res.duration, 3)}}
    if words:
        d["words"] = [_with_speaker({"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}, w)
                      for s in res.segments for w in (s.words or [])]
    return d


def _with_speaker(d: dict, x) -> dict:
    """With diarization (form field diarize): the segment's or word's speaker."""
    who = getattr(x, "speaker", None)
    return d if who is None else {**d, "speaker": who}


def _diarize_form(form, stream: bool):
    """The form fields diarize, speakers, min_speakers, max_speakers -> DiarizeOptions or None."""
    from .speakers import DiarizeOptions, check_installed

    on = str(form.get("diarize") or "false").strip().lower() in ("true", "1", "yes")
    counts = {}
    for name in ("speakers", "min_speakers", "max_speakers"):
        v = form.get(name)
        if v is None or v == "":
            continue
        if not on:
            raise ApiError(400, f"{name} goes with diarize=true", "invalid_request")
        try:
            counts[name] = int(str(v).strip())
        except ValueError:
            raise ApiError(400, f"{name} must be a positive integer (got {str(v)[:40]!r})", "invalid_request") from None
    if not on:
        return None
    if stream:
        raise ApiError(400, "diarize does not go with stream (the speakers are known only at the end)",
                       "invalid_request")
    try:
        check_installed()
        return DiarizeOptions(**counts).checked()
    except AsrggufError as e:
        raise ApiError(400, str(e), "diarize_unavailable" if "pip install" in str(e) else "invalid_request") from None


# ----------------------------------------------------------------------------- the app
class _TooLarge(Exception):
    pass


def _limited(receive, limit: int):
    """An ASGI receive that raises _TooLarge once the body passes `limit` bytes."""
    seen = 0

    async def wrapped():
        nonlocal seen
        msg = await receive()
        if msg.get("type") == "http.request":
            seen += len(msg.get("body", b""))
            if seen > limit:
                raise _TooLarge()
        return msg
    return wrapped


async def _wait_disconnect(receive) -> None:
    while True:
        msg = await receive()
        if msg.get("type") == "http.disconnect":
            return


def create_app(cfg: ServeConfig, engine: EngineThread | None = None):
    check_dependencies()
    from starlette.applications import Starlette
    from starlette.datastructures import UploadFile
    from starlette.requests import Request
    from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
    from starlette.routing import Route, WebSocketRoute

    sched = engine or EngineThread(cfg)
    limit = int(cfg.max_upload_mb * 1024 * 1024)
    created = int(time.time())

    def error(e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status,
                            headers={"WWW-Authenticate": "Bearer"} if e.status == 401 else None)

    def check_key(request) -> None:
        if not cfg.api_key:
            return
        auth = request.headers.get("authorization", "")
        given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(given.encode(), cfg.api_key.encode()):
            raise ApiError(401, "incorrect API key provided" if given else
                           "missing API key: send 'Authorization: Bearer KEY'", "invalid_api_key")

    def check_loaded() -> None:
        if not sched.loaded.is_set():
            raise ApiError(503, "the model is loading; retry shortly", "model_loading")

    async def health(request):
        if not sched.loaded.is_set():
            return error(ApiError(503, "the model is loading", "model_loading"))
        return JSONResponse({"status": "ok", "model": cfg.model_id, **sched.counts()})

    async def models(request):
        try:
            check_key(request)
        except ApiError as e:
            return error(e)
        return JSONResponse({"object": "list", "data": [
            {"id": cfg.model_id, "object": "model", "created": created, "owned_by": "asrgguf"}]})

    async def transcriptions(request):
        try:
            check_key(request)
            check_loaded()
            return await _transcribe(request)
        except ApiError as e:
            return error(e)

    async def _form(request):
        cl = request.headers.get("content-length")
        if cl and cl.isdigit() and int(cl) > limit:
            raise ApiError(413, f"the upload is {int(cl)} bytes, over the server's limit of {limit} bytes "
                                f"(--max-upload-mb {cfg.max_upload_mb:g})", "file_too_large")
        req = Request(request.scope, _limited(request.receive, limit))
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data") and not ctype.startswith("application/x-www-form-urlencoded"):
            raise ApiError(400, "send the audio as multipart/form-data with a 'file' field", "invalid_request")
        try:
            return await req.form(max_files=1, max_fields=64)
        except _TooLarge:
            raise ApiError(413, f"the upload is over the server's limit of {limit} bytes "
                                f"(--max-upload-mb {cfg.max_upload_mb:g})", "file_too_large") from None
        except Exception as e:  # noqa: BLE001 - multipart errors (starlette's HTTPException, parser errors)
            detail = getattr(e, "detail", None) or str(e) or type(e).__name__
            raise ApiError(400, f"cannot parse the form: {detail}", "invalid_request") from None

    async def _transcribe(request):
        form = await _form(request)
        try:
            return await _handle(request, form)
        finally:
            await form.close()

    async def _handle(request, form):
        f = form.get("file")
        if not isinstance(f, UploadFile):
            raise ApiError(400, "no audio: send the file in a multipart field named 'file'", "missing_file")
        model = form.get("model")
        if isinstance(model, str) and not model_accepted(model, cfg.model_id):
            raise ApiError(404, f"the model {model!r} is not served here (this server serves {cfg.model_id!r}; "
                                f"generic names such as whisper-1 or qwen3-asr are accepted too)", "model_not_found")
        fmt = str(form.get("response_format") or "json").strip().lower()
        if fmt not in RESPONSE_FORMATS:
            raise ApiError(400, f"unknown response_format {fmt!r} ({', '.join(RESPONSE_FORMATS)})",
                           "invalid_response_format")
        temp = form.get("temperature")
        if temp not in (None, ""):
            try:
                tv = float(temp)
            except ValueError:
                tv = math.nan
            if tv != 0.0:
                raise ApiError(400, f"temperature {temp!r}: only 0 is supported (greedy decoding, as the "
                                    f"official package)", "invalid_temperature")
        try:
            language = normalize_language(form.get("language") or None)
        except AsrggufError as e:
            raise ApiError(400, str(e), "unknown_language") from None
        grans = [str(g).strip().lower() for g in form.getlist("timestamp_granularities[]") +
                 form.getlist("timestamp_granularities")]
        bad = [g for g in grans if g not in ("segment", "word")]
        if bad:
            raise ApiError(400, f"unknown timestamp_granularities {bad[0]!r} (segment, word)",
                           "invalid_timestamp_granularities")
        words = "word" in grans
        if words and fmt != "verbose_json":
            raise ApiError(400, "timestamp_granularities word needs response_format verbose_json",
                           "invalid_timestamp_granularities")
        if words and getattr(sched.tr, "aligner", None) is None:
            raise ApiError(400, "word timestamps need an aligner, and this server has none loaded",
                           "word_timestamps_unavailable")
        stream = str(form.get("stream") or "false").strip().lower() in ("true", "1", "yes")
        diarize = _diarize_form(form, stream)
        vad = str(form.get("vad") or "false").strip().lower() in ("true", "1", "yes")
        if vad:
            try:
                vad_model_path()
            except AsrggufError as e:
                raise ApiError(400, str(e), "vad_unavailable") from None
        prompt = form.get("prompt") or ""
        if not isinstance(prompt, str):
            raise ApiError(400, "prompt must be text", "invalid_request")
        try:
            opts = Options.make(language=language, context=prompt, max_new_tokens=cfg.max_new_tokens,
                                piece_seconds=cfg.piece_seconds, bench_tokens=cfg.bench_tokens,
                                timestamps="word" if words else "segment", vad=vad or None)
        except AsrggufError as e:
            raise ApiError(400, str(e), "invalid_request") from None
        need = sched.tr.positions_needed(opts)
        if need > sched.n_ctx:
            raise ApiError(400, f"the prompt is too long: a piece of this request can need {need} context positions "
                                f"and a sequence holds {sched.n_ctx} (shorten the prompt by {need - sched.n_ctx} "
                                f"tokens or more)", "prompt_too_long")
        data = await f.read()
        name = f.filename or "upload"
        if not data:
            raise ApiError(400, f"{name}: file is empty", "invalid_audio")
        src = io.BytesIO(data)
        src.name = name
        del data

        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def emit(kind, payload):
            try:
                loop.call_soon_threadsafe(events.put_nowait, (kind, payload))
            except RuntimeError:  # the event loop has closed (shutting down): nobody is listening
                pass

        r = sched.submit(src, opts, emit)
        gone = asyncio.ensure_future(_wait_disconnect(request.receive))
        # speakers: a second pass over the upload in a worker thread, beside the transcription
        turns = None if diarize is None else asyncio.ensure_future(asyncio.to_thread(
            sched.tr.diarize, src.getvalue(), diarize))

        async def next_event():
            get = asyncio.ensure_future(events.get())
            done, _ = await asyncio.wait({get, gone}, return_when=asyncio.FIRST_COMPLETED)
            if get in done:
                return get.result()
            get.cancel()
            return None

        try:
            first = await next_event()
        except BaseException:
            sched.cancel(r)
            gone.cancel()
            raise
        if first is None:
            sched.cancel(r)
            return Response(status_code=499)
        if first[0] == "error":
            gone.cancel()
            raise api_error(first[1])
        pending = [] if first[0] == "ready" else [first]   # no pieces at all: "done" comes first

        async def next_event_after_first():
            return pending.pop() if pending else await next_event()

        if stream:
            async def sse():
                text, usage = "", {}
                try:
                    while True:
                        ev = await next_event_after_first()
                        if ev is None:
                            return
                        kind, payload = ev
                        if kind == "segment":
                            new = join_texts([text, payload.text])
                            delta, text = new[len(text):], new
                            if delta:
                                yield _sse({"type": "transcript.text.delta", "delta": delta})
                        elif kind == "done":
                            st = payload.stats
                            usage = {"type": "tokens", "input_tokens": st["prompt_tokens"],
                                     "output_tokens": st["generated_tokens"],
                                     "total_tokens": st["prompt_tokens"] + st["generated_tokens"]}
                            yield _sse({"type": "transcript.text.done", "text": text, "usage": usage})
                            return
                        elif kind == "error":
                            yield _sse(api_error(payload).body())
                            return
                finally:
                    sched.cancel(r)
                    gone.cancel()
            return StreamingResponse(sse(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

        segs, fin = [], None
        try:
            while fin is None:
                ev = await next_event_after_first()
                if ev is None:
                    sched.cancel(r)
                    return Response(status_code=499)
                kind, payload = ev
                if kind == "segment":
                    segs.append(payload)
                elif kind == "error":
                    raise api_error(payload)
                elif kind == "done":
                    fin = payload.stats
        finally:
            sched.cancel(r)
            gone.cancel()
        res = _transcription(segs, fin["audio_seconds"], name, opts, sched.tr.model_info)
        if turns is not None:
            try:
                res.turns = await turns
            except AsrggufError as e:
                raise ApiError(400, str(e), "invalid_audio") from None
            for s in res.segments:
                s.label(res.turns)
        if fmt == "json":
            return JSONResponse({"text": res.text, "usage": {"type": "duration", "seconds": round(res.duration, 3)}})
        if fmt == "text":
            return PlainTextResponse(res.text + "\n")
        if fmt == "srt":
            return PlainTextResponse(formats.to_srt(res), media_type="application/x-subrip")
        if fmt == "vtt":
            return PlainTextResponse(formats.to_vtt(res), media_type="text/vtt")
        return JSONResponse(verbose_json(res, words))

    async def not_found(request, exc):
        return error(ApiError(404, f"no route {request.method} {request.url.path}", "not_found"))

    async def method_not_allowed(request, exc):
        return error(ApiError(405, f"method {request.method} not allowed on {request.url.path}", "method_not_allowed"))

    async def internal(request, exc):
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        return error(ApiError(500, f"internal error: {type(exc).__name__}", "internal_error"))

    def lifespan(app):
        import contextlib

        @contextlib.asynccontextmanager
        async def span():
            if not sched.thread.is_alive() and not sched.loaded.is_set():
                sched.start()
            yield
            await asyncio.get_running_loop().run_in_executor(None, sched.stop)
        return span()

    app = Starlette(routes=[
        Route("/v1/audio/transcriptions", transcriptions, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        WebSocketRoute("/v1/realtime", realtime_route(cfg, sched)),
    ], exception_handlers={404: not_found, 405: method_not_allowed, 500: internal}, lifespan=lifespan)
    app.state.engine = sched
    return app


def _sse(obj: dict) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def serve(cfg: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info",
          on_ready: Callable[[float], None] | None = None) -> None:
    """Run the server until interrupted; the model loads in the background (GET /health: 503 until then),
    then on_ready(load seconds) is called. A model that fails to load stops the server with that error
    (AsrggufError)."""
    check_dependencies()
    import uvicorn

    server = None

    def failed(msg: str) -> None:
        if server is not None:
            server.should_exit = True

    sched = EngineThread(cfg, on_load_failed=failed)
    app = create_app(cfg, sched)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5,
                            lifespan="on")
    server = uvicorn.Server(config)

    def announce():
        if sched.loaded.wait(None) and not sched.load_error and on_ready is not None:
            on_ready(sched.load_s)
    threading.Thread(target=announce, daemon=True).start()
    server.run()
    if sched.load_error:
        raise AsrggufError(sched.load_error)
