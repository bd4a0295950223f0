"""`asrgguf serve`: an OpenAI-compatible `/v1/audio/transcriptions` server over ONE Transcriber.

Layout (the asyncio side never touches llama.cpp or torch):

* the ASGI app (Starlette, run by uvicorn; uploads parsed by python-multipart) checks each request
  (key, size, fields), hands its bytes to the scheduler and waits for events on an asyncio queue;
* per request, a reader thread decodes the upload into pieces (`Transcriber.open_pieces`, the cuts of
  `asrgguf run`), at most two pieces ahead;
* one engine thread (`serve_engine.EngineThread`) loads the Transcriber and pumps its one `Scheduler`
  (scheduler.py, the decode loop `run`, live streams and the Ray workers also use): the request holding
  the fewest sequences (the oldest on ties) gets the next free one, every step advances all active
  pieces by one token, a finished piece's sequence is taken at the next step (continuous batching).
  Segments reach their request in order, so a stream sends one `transcript.text.delta` per piece as
  soon as it and the pieces before it are done.

A request that fails (bad audio, a too-long prompt) gets its own error and frees its sequences; a
client that goes away has its request cancelled (its sequences freed at the next step). At most
`parallel + max_queue` requests are inside at once; one more gets 429. `serve_realtime` adds the
Realtime WebSocket on the same engine.

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
import sys
import threading
import time
import traceback
from typing import Callable

from . import writers
from .errors import AsrggufError
from .languages import normalize_language
from .options import Options
from .parse import join_texts
from .results import Transcription, TranscriptionInfo
from .serve_engine import ApiError, EngineThread, ServeConfig, api_error, model_accepted
from .serve_realtime import realtime_route
from .vad import model_path as vad_model_path

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
def check_dependencies() -> None:
    """One-line error when the serve extra is missing."""
    missing = [pkg for mod, pkg in (("starlette", "starlette"), ("uvicorn", "uvicorn"),
                                    ("python_multipart", "python-multipart"))
               if importlib.util.find_spec(mod) is None]
    if missing:
        raise AsrggufError(f"asrgguf serve needs {', '.join(missing)}: pip install 'asrgguf[serve]'")



# ----------------------------------------------------------------------------- responses
def _transcription(segs: list, duration: float, name: str, opts, model: dict) -> Transcription:
    return Transcription.collect(segs, TranscriptionInfo(name, opts.language, duration, opts, model))


def verbose_json(res, words: bool) -> dict:
    """OpenAI's verbose_json: the pieces as segments (exact start/end; no logprob figures: the model's
    greedy decode keeps none), words when asked for and an aligner gave them."""
    d = {"task": "transcribe", "language": res.language.lower(), "duration": round(res.duration, 3),
         "text": res.text,
         "segments": [{"id": s.id, "seek": int(round(s.start * 100)), "start": round(s.start, 3),
                       "end": round(s.end, 3), "text": s.text, "tokens": list(s.token_ids), "temperature": 0.0}
                      for s in res.segments],
         "usage": {"type": "duration", "seconds": round(res.duration, 3)}}
    if words:
        d["words"] = [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3)}
                      for s in res.segments for w in (s.words or [])]
    return d


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
        if fmt == "json":
            return JSONResponse({"text": res.text, "usage": {"type": "duration", "seconds": round(res.duration, 3)}})
        if fmt == "text":
            return PlainTextResponse(res.text + "\n")
        if fmt == "srt":
            return PlainTextResponse(writers.to_srt(res), media_type="application/x-subrip")
        if fmt == "vtt":
            return PlainTextResponse(writers.to_vtt(res), media_type="text/vtt")
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
