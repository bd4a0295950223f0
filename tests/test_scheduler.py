"""The one scheduler (asrgguf/scheduler.py) driven directly, on the tiny f32 checkpoint: fair share between
requests, cancel, context growth while sequences are busy, a failing request isolated. In every case each
request gets the token ids it gets alone through `Transcriber.transcribe` (which test_transcribe ties to the
official implementation), and the order of admissions is read from the batch itself."""
from __future__ import annotations

import numpy as np
import pytest

from asrgguf import Transcriber
from asrgguf.audio import load
from asrgguf.errors import AsrggufError
from asrgguf.scheduler import Feed, IterFeed, Request

TOKENS = 6        # every piece decodes exactly this many tokens (bench_tokens): pieces end on the same step


@pytest.fixture(scope="module", autouse=True)
def python_loop():
    """The scheduler's choices step by step: one decode step per pump, as the Python loop takes them (the C loop
    runs many per pump; tests/test_decode_loop.py ties it to this one)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASRGGUF_DECODE_LOOP", "python")
        yield


@pytest.fixture(scope="module")
def engine(gguf_pair, ck_gqa):
    tr = Transcriber.from_gguf(gguf_pair(ck_gqa, "f32")[0], threads=2)
    yield tr
    tr.close()


@pytest.fixture(scope="module")
def long40(clip20) -> np.ndarray:
    """clip20 twice at 16 kHz: at least four pieces of 10 s."""
    wav = load(str(clip20))
    return np.concatenate([wav, wav])


def alone(tr, audio, **opts) -> list[list[int]]:
    segments, _ = tr.transcribe(audio, **opts)
    return [s.token_ids for s in segments]


def request(tr, audio, opts, max_active=2, events=None) -> Request:
    emit = None if events is None else (lambda kind, payload: events.append((kind, payload)))
    return Request(IterFeed(tr.open_pieces(audio, opts.piece_seconds)[2]), opts, emit=emit, max_active=max_active)


def drive(sched, reqs, log=None, limit=10000):
    """Pump until every request has finished; log, when given, gets the (request id, piece index) pairs
    active in the batch after each pump."""
    for _ in range(limit):
        if all(r.finished for r in reqs):
            return
        sched.pump()
        if log is not None:
            log.append(sorted((j.tag[0].id, j.tag[1].index) for j in sched.batcher.active))
    raise AssertionError("the requests did not finish")


def ids_of(req: Request) -> list[list[int]]:
    return [s.token_ids for s in req.ready]


def test_fair_share_gives_a_late_request_the_next_free_sequence(engine, long40, clip5):
    opts = engine.options(piece_seconds=10, bench_tokens=TOKENS)
    want_a, want_b = alone(engine, long40, piece_seconds=10, bench_tokens=TOKENS), \
        alone(engine, str(clip5), piece_seconds=10, bench_tokens=TOKENS)
    assert len(want_a) >= 4 and len(want_b) == 1
    sched = engine.scheduler
    sched.reserve(2, engine.positions_needed(opts))
    a = sched.submit(request(engine, long40, opts))
    sched.pump()
    assert sorted((j.tag[0].id, j.tag[1].index) for j in sched.batcher.active) == [(a.id, 0), (a.id, 1)]
    b = sched.submit(request(engine, str(clip5), opts))
    log: list = []
    drive(sched, [a, b], log)
    # A's two pieces end on the same step; the refill gives A (the older, on a tie at 0 held) its third piece,
    # then B (0 held against A's 1), before A's fourth
    first_b = next(s for s in log if any(rid == b.id for rid, _ in s))
    assert first_b == [(a.id, 2), (b.id, 0)]
    assert ids_of(a) == want_a and ids_of(b) == want_b
    assert a.stats["pieces"] == len(want_a) and b.stats["pieces"] == 1


def test_cancel_frees_the_sequences_and_spares_the_others(engine, long40, clip5):
    opts = engine.options(piece_seconds=10, bench_tokens=TOKENS)
    want_b = alone(engine, str(clip5), piece_seconds=10, bench_tokens=TOKENS)
    sched = engine.scheduler
    sched.reserve(2, engine.positions_needed(opts))
    ev_a: list = []
    a = sched.submit(request(engine, long40, opts, events=ev_a))
    b = sched.submit(request(engine, str(clip5), opts, max_active=1))
    sched.pump()
    sched.pump()
    held = sum(1 for j in sched.batcher.active if j.tag[0] is a)
    assert held == 1   # fair share: one sequence each
    before = sched.stats["cancelled_jobs"]
    sched.cancel(a)    # no pump runs: freed at once
    assert sched.stats["cancelled_jobs"] - before == held
    assert all(j.tag[0] is not a for j in sched.batcher.active) and sched.batcher.free == 1
    drive(sched, [b])
    assert a.cancelled and a.finished and not any(k in ("done", "error") for k, _ in ev_a)
    assert ids_of(b) == want_b


def test_context_grows_when_the_sequences_are_idle(gguf_pair, ck_gqa, long40, clip5):
    """A 40-s piece does not fit the context sized for 10-s pieces: it waits until the running piece is done,
    then the KV cache is made larger, and both get their ids."""
    with Transcriber.from_gguf(gguf_pair(ck_gqa, "f32")[0], threads=2) as tr:
        small = tr.options(piece_seconds=10, bench_tokens=TOKENS)
        big = tr.options(piece_seconds=60, bench_tokens=TOKENS)
        want_small = alone(tr, str(clip5), piece_seconds=10, bench_tokens=TOKENS)
        want_big = alone(tr, long40, piece_seconds=60, bench_tokens=TOKENS)
    with Transcriber.from_gguf(gguf_pair(ck_gqa, "f32")[0], threads=2) as tr:
        sched = tr.scheduler
        sched.reserve(2, tr.positions_needed(small))
        n_ctx0 = sched.n_ctx
        first = sched.submit(request(tr, str(clip5), small, max_active=1))
        sched.pump()
        second = sched.submit(request(tr, long40, big, max_active=1))
        log: list = []
        drive(sched, [first, second], log)
        assert sched.n_ctx > n_ctx0 and tr.positions_needed(big, long40.size) > n_ctx0
        assert not any({rid for rid, _ in s} == {first.id, second.id} for s in log)   # never side by side
        assert ids_of(first) == want_small and ids_of(second) == want_big


class _FailsAtSecond(Feed):
    def __init__(self, pieces):
        self._it, self._n = pieces, 0

    def poll(self):
        self._n += 1
        if self._n == 2:
            raise AsrggufError("bad.wav: broken at its second piece")
        return next(self._it)


def test_a_failing_request_fails_alone(engine, long40, clip5):
    opts = engine.options(piece_seconds=10, bench_tokens=TOKENS)
    want_b = alone(engine, str(clip5), piece_seconds=10, bench_tokens=TOKENS)
    sched = engine.scheduler
    ev: list = []
    bad = sched.submit(Request(_FailsAtSecond(engine.open_pieces(long40, 10)[2]), opts, max_active=2,
                               emit=lambda k, p: ev.append((k, p))))
    good = sched.submit(request(engine, str(clip5), opts))
    drive(sched, [bad, good])
    # the piece decoded before the failure is delivered (no lost work), then the one error
    assert [k for k, _ in ev] == ["segment", "error"] and str(ev[1][1]) == "bad.wav: broken at its second piece"
    assert ev[0][1].token_ids == alone(engine, long40, piece_seconds=10, bench_tokens=TOKENS)[0]
    assert ids_of(good) == want_b and not sched.batcher.active
