"""The server's engine side: its configuration, OpenAI-shaped errors, and the thread that loads the one
`Transcriber` and pumps its `Scheduler` (uploads are read by threads of their own, `ThreadFeed`)."""
from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .errors import AsrggufError
from .loading import EngineConfig
from .options import Options
from .pieces import DEFAULT_PIECE_SECONDS
from .realtime import MAX_MESSAGE_BYTES
from .scheduler import Request, Scheduler, ThreadFeed, error_line

GENERIC_MODELS = ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe")
READ_AHEAD = 2          # pieces a reader decodes ahead of the decoder, per request
PROMPT_ALLOWANCE = 256  # context positions per sequence kept for a request's prompt (its `prompt` field)


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
