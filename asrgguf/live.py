"""Live transcription: `Transcriber.stream()` -> `Stream`, fed 16 kHz samples as they arrive, giving
`partial` and `final` events. A layer on the engine's one scheduler, not a decode loop of its own.

* Utterances are found by the engine's voice-activity detector (`vad.SpeechDetector`, Silero VAD, the one
  `--vad` uses) with stream settings (a shorter silence ends an utterance; `LIVE_VAD`); an utterance that
  reaches `max_utterance_seconds` is cut there as `--vad` cuts a long region.
* A final is the utterance's audio decoded as one piece, exactly as a file of that audio would be
  (`asrgguf run` on it gives the same token ids): the same `make_job`, prompt and greedy decode, as a
  request of the scheduler, batched with every other stream, file and upload of the engine.
* Partials: every `step_seconds` of speech the utterance so far is decoded as a piece of its own
  (a short request), at most one in flight per stream; work per step is bounded by the utterance's
  length (at most `max_utterance_seconds`), so hours of audio cost the same per second as the first
  minute. The text so far is a partial's text; the final replaces it.
* The stream keeps one sequence of the batch between its steps (`generate.KeptSeq`, `keep_kv`): the KV
  cache of the prompt's prefix and of the audio rows that did not change (the completed encoder windows),
  so a step re-prefills only from the first changed row; a final reuses only rows its own (offline)
  encoder gave bit for bit, so it stays exact.

docs/streaming.md has the strategy, its knobs and what is not built yet.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .errors import AsrggufError
from .generate import KeptSeq
from .pieces import SAMPLE_RATE, Piece
from .results import Segment
from .scheduler import PushFeed, Request
from .vad import SpeechDetector, Tape, VadOptions

# stream settings: an utterance ends after half a second of silence (files: 1 s), padded by 200 ms
LIVE_VAD = VadOptions(min_silence_ms=500, speech_pad_ms=200)
PARTIAL_MODES = ("draft", "rollback", "full", "off")   # off: finals only (the Realtime server)


@dataclass
class LivePiece(Piece):
    """A piece with the token ids its decode starts from (`generate.Job`): `prefix` taken as generated
    (rollback partials), `draft` verified (exact)."""
    prefix: tuple = field(default=())
    draft: tuple = field(default=())
    embed: object = None   # a callable giving the piece's embeddings (partials: the cached encoder windows)
    keep: object = None    # the stream's kept sequence (`generate.KeptSeq`): prefill only what changed
    spec: object = None    # a final's speculative decode (`_Spec`), waited for by `_FinalFeed`


class _Spec:
    """A speculative final: the utterance as it ends if the silence that began goes on, decoded (as a partial)
    when the detector's silence begins, with the offline encoder on exactly those samples."""

    def __init__(self, region: tuple[int, int], wav: np.ndarray):
        self.region, self.wav = region, wav
        self.emb = self.ids = self.req = None


class _FinalFeed(PushFeed):
    """The finals' pieces in order. A final whose speculative decode is still running waits for it, then takes
    its ids as the draft (verified) and its embeddings (same samples, same encoder): with the kept sequence it
    prefills only the suffix and verifies the draft in one pass."""

    def poll(self):
        piece = self._q[0] if self._q else None
        spec = getattr(piece, "spec", None)
        if spec is not None:
            if not spec.req.finished:
                return None
            piece.spec = None
            if spec.ids is not None:
                piece.draft = spec.ids
            if spec.emb is not None:
                piece.embed = lambda e=spec.emb: e
        return super().poll()


@dataclass
class Event:
    """`speech_started` / `speech_stopped`: the detector found an utterance's start / end; `partial`: the text
    so far of utterance `utterance` (start: its first sample's time); `final`: its text for good, with the
    `Segment` (times in the stream, words when an aligner is loaded)."""
    type: str
    utterance: int
    text: str
    start: float
    end: float | None = None
    segment: Segment | None = None


class Stream:
    """One live stream of an engine (see the module's docstring). `feed(samples)` and `finish()` return the
    events that are ready; with `wait=True` (the default) they first let the engine decode what this
    stream asked for, so a final is there as soon as its utterance has ended."""

    def __init__(self, engine, opts, vad: VadOptions | None = None, step_seconds: float = 1.0,
                 max_utterance_seconds: float = 30.0, wait: bool = True, on_event=None, detect: bool = True,
                 partials: str = "draft", rollback: int = 5, draft_final: bool = True, keep_kv: bool = True,
                 speculative_final: bool = False):
        if partials not in PARTIAL_MODES:
            raise AsrggufError(f"partials must be one of {', '.join(PARTIAL_MODES)} (got {partials!r})")
        if not 0 <= rollback <= 100:
            raise AsrggufError(f"rollback must be between 0 and 100 tokens (got {rollback})")
        if not 0.1 <= step_seconds <= 30:
            raise AsrggufError(f"step_seconds must be between 0.1 and 30 (got {step_seconds})")
        if not 1 <= max_utterance_seconds <= opts.piece_seconds:
            raise AsrggufError(f"max_utterance_seconds must be between 1 and piece_seconds={opts.piece_seconds:g} "
                               f"(got {max_utterance_seconds})")
        self.engine, self.opts, self.wait = engine, opts, wait
        self.on_event = on_event          # called with each event (from the engine's thread for partials and
        self.detect = detect              # finals) instead of collecting them; detect=False: utterances come
                                          # only through push_utterance (manual commits)
        self.vad = replace(vad or LIVE_VAD, max_speech_seconds=float(max_utterance_seconds))
        self._det = SpeechDetector(self.vad, max_utterance_seconds)
        self._tape = Tape()
        self._step = int(step_seconds * SAMPLE_RATE)
        self._events: list[Event] = []
        self._finals = _FinalFeed()
        self._final_req = Request(self._finals, opts, emit=self._on_final, max_active=1)
        engine.scheduler.submit(self._final_req)
        self._n_utt = 0                  # utterances finalized (pushed)
        self._partial: Request | None = None
        self._last_partial_at = 0        # stream sample at which the last partial was asked for
        self._open: int | None = None    # padded start of the utterance in progress
        self.partials, self.rollback, self.draft_final = partials, rollback, draft_final
        self._last_ids: tuple = ()       # the token ids of the utterance's last partial
        self._enc = None                 # the utterance's LiveEncoder (partials; used by the engine's thread only)
        # the stream's sequence kept between its jobs (not for partials="full", the from-scratch baseline)
        self._kv = KeptSeq() if keep_kv and partials != "full" else None
        self.speculative_final = speculative_final
        self._spec: _Spec | None = None   # the speculative final of the utterance in progress
        self._spec_reqs: list[Request] = []   # speculative decodes a final waits for (cancelled by close)
        self.closed = False

    # --- the engine's callbacks (the scheduler's thread)
    def _add(self, e: Event) -> None:
        if self.on_event is not None:
            self.on_event(e)
        else:
            self._events.append(e)

    def _on_final(self, kind: str, payload) -> None:   # errors stay in the request (raised by _pump_until)
        if kind == "segment":
            seg = payload
            self._add(Event("final", seg.id, seg.text, seg.start, seg.end, seg))
        elif self._kv is not None:   # done or failed: no job of the stream will need its sequence
            self.engine.scheduler.release(self._kv, now=False)

    def _on_partial(self, utt: int, start: float):
        def emit(kind: str, payload) -> None:
            if kind == "segment" and utt == self._n_utt and not self.closed:   # not superseded by its final
                self._last_ids = tuple(payload.token_ids)
                self._add(Event("partial", utt, payload.text, start))
        return emit

    # --- the caller's side
    def feed(self, samples) -> list[Event]:
        """16 kHz float32 samples, any block size (other rates: `audio.prepare(x, rate)` first)."""
        if self.closed:
            raise AsrggufError("the stream is finished")
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if not self.detect:
            return self._take()
        self._tape.append(x)
        for r in self._det.feed(x):
            self._final(r.start, r.end)
        self._maybe_speculate()
        self._maybe_partial()
        return self._take()

    def push_utterance(self, wav: np.ndarray, start: int) -> int:
        """An utterance given whole (a manual commit), `start` its first sample in the stream: decoded as a
        final like the detector's; returns its utterance number."""
        n = self._n_utt
        self._finals.push(LivePiece(n, np.asarray(wav, np.float32), start, int(wav.size), keep=self._kv))
        self._n_utt += 1
        self.engine.scheduler.wake()
        return n

    def finish(self) -> list[Event]:
        """The end of the stream: the utterance in progress is finalized; returns the last events."""
        if self.closed:
            return []
        for r in (self._det.finish() if self.detect else []):
            self._final(r.start, r.end)
        self._finals.end()
        if self.wait:
            self._pump_until(lambda: self._final_req.finished)
        self.closed = True
        if self._partial is not None:
            self.engine.scheduler.cancel(self._partial)
        if self.wait:
            self._release_kv()
        return self._take()

    def close(self) -> None:
        """Drop the stream (its client went away): its sequences are freed at once."""
        self.closed = True
        for r in (self._final_req, self._partial, *self._spec_reqs):
            if r is not None:
                self.engine.scheduler.cancel(r)
        self._release_kv()

    def _release_kv(self) -> None:   # (again after the final's "done", which leaves it to the next pump)
        if self._kv is not None:
            self.engine.scheduler.release(self._kv)

    # --- internals
    def _final(self, start: int, end: int) -> None:
        if self._open is None:
            self._add(Event("speech_started", self._n_utt, "", start / SAMPLE_RATE))
        self._add(Event("speech_stopped", self._n_utt, "", start / SAMPLE_RATE, end / SAMPLE_RATE))
        wav = self._tape.take(start, end)
        spec, self._spec = self._spec, None
        if spec is not None and (spec.region != (start, end) or not np.array_equal(spec.wav, wav)):
            self.engine.scheduler.cancel(spec.req)   # decoded other samples: not this final's
            spec = None
        # as a file of the utterance (no padding); the last partial's tokens as a draft the decode verifies
        # (or the speculative decode's, when it has the same samples: the final waits for it, _FinalFeed)
        piece = LivePiece(self._n_utt, wav, start, end - start, draft=self._last_ids if self.draft_final else (),
                          keep=self._kv, spec=spec)
        self._n_utt += 1
        self._open = None
        self._last_ids = ()
        self._enc = None
        if spec is not None and self._partial is spec.req:
            self._spec_reqs = [r for r in self._spec_reqs if not r.finished] + [spec.req]
            self._partial = None
        if self._partial is not None:   # the final supersedes it
            self.engine.scheduler.cancel(self._partial)
            self._partial = None
        self._finals.push(piece)
        self.engine.scheduler.wake()
        self._tape.drop_before(self._det.keep_from)
        if self.wait:
            n = self._n_utt
            self._pump_until(lambda: self._final_req._next_index >= n or self._final_req.finished)

    def _maybe_partial(self) -> None:
        start = self._det.speech_start
        if start is None:
            self._tape.drop_before(self._det.keep_from)
            return
        if self._open is None:
            self._open = start
            self._add(Event("speech_started", self._n_utt, "", start / SAMPLE_RATE))
        now = self._det.samples
        if self._spec is not None:   # silence began: the speculative final is the utterance's last partial
            return
        if self.partials == "off" or now - max(start, self._last_partial_at) < self._step:
            return
        if self._partial is not None and not self._partial.finished:
            return   # one partial in flight at a time
        self._last_partial_at = now
        wav = self._tape.take(start, now)
        feed = PushFeed()
        ids = self._last_ids
        if self.partials == "full":       # from scratch: the utterance so far encoded and decoded anew
            piece = Piece(0, wav, start, now - start)
        else:
            if self._enc is None:
                from .live_encoder import LiveEncoder

                self._enc = LiveEncoder(self.engine.encoder, self.engine.features)
            embed = _cached_embeddings(self._enc, wav)
            if self.partials == "rollback":   # the official streaming: the last text less its last tokens, given
                piece = LivePiece(0, wav, start, now - start, prefix=ids[:max(0, len(ids) - self.rollback)],
                                  embed=embed, keep=self._kv)
            else:                             # checked: the greedy decode of the utterance so far, made cheap
                piece = LivePiece(0, wav, start, now - start, draft=ids, embed=embed, keep=self._kv)
        feed.push(piece)
        feed.end()
        opts = replace(self.opts, timestamps="segment")   # partials: no word times
        self._partial = Request(feed, opts, emit=self._on_partial(self._n_utt, start / SAMPLE_RATE), max_active=1)
        self.engine.scheduler.submit(self._partial)
        if self.wait:
            req = self._partial
            self._pump_until(lambda: req.finished)

    def _maybe_speculate(self) -> None:
        """When the detector's silence begins (and the samples up to the region's padded end are in), decode the
        utterance as it then ends, as a partial on the offline encoder; its final, if the silence goes on with
        the same samples, waits for it and verifies its ids (exact). Speech resuming drops it."""
        if not self.speculative_final:
            return
        det = self._det
        end, start = det.tentative_end, det.speech_start
        region = None if end is None or start is None or det.samples < end else (start, end)
        if self._spec is not None and self._spec.region != region:
            self.engine.scheduler.cancel(self._spec.req)
            if self._partial is self._spec.req:
                self._partial = None
            self._spec = None
        if region is None or self._spec is not None:
            return
        if self._partial is not None and not self._partial.finished:   # superseded
            self.engine.scheduler.cancel(self._partial)
        spec = self._spec = _Spec(region, self._tape.take(*region))

        def embed() -> np.ndarray:
            spec.emb = self.engine.encode(spec.wav)[0]
            return spec.emb
        partial = self._on_partial(self._n_utt, start / SAMPLE_RATE)

        def emit(kind: str, payload) -> None:
            if kind == "segment":
                spec.ids = tuple(payload.token_ids)
            partial(kind, payload)
        feed = PushFeed()
        feed.push(LivePiece(0, spec.wav, start, end - start, draft=self._last_ids, embed=embed, keep=self._kv))
        feed.end()
        spec.req = self._partial = Request(feed, replace(self.opts, timestamps="segment"), emit=emit, max_active=1)
        self._last_partial_at = det.samples
        self.engine.scheduler.submit(spec.req)
        if self.wait:
            req = spec.req
            self._pump_until(lambda: req.finished)

    def _pump_until(self, done) -> None:
        sched = self.engine.scheduler
        while not done():
            if self._final_req.error is not None:
                raise self._final_req.error
            sched.pump()

    def _take(self) -> list[Event]:
        out, self._events = self._events, []
        return out


def _cached_embeddings(enc, wav: np.ndarray):
    """The partial's embeddings, computed when the scheduler encodes the piece (its thread; partials of a
    stream are one at a time): the utterance's new samples fed to its LiveEncoder, then one step (each
    completed 8-s window encoded once, one stale window refreshed a step: docs/streaming.md)."""
    def embed() -> np.ndarray:
        enc.feed(wav[enc.n_samples:])
        return enc.step(refresh=1).embeddings
    return embed


__all__ = ["Event", "LIVE_VAD", "Stream"]
