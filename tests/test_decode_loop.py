"""The greedy decode loop in C (native/decode_loop.c, asrgguf/decode_loop.py) against today's Python loop
(`Batcher.step` with ASRGGUF_DECODE_LOOP=python): the same ids, the same end of every sequence (stop token,
token limit, repetition guard), the same llama_decode calls and rows, at f32 and q8_0 (the tiny random
checkpoint), with 1 and 3 parallel sequences; its argmax is numpy's and its repetition check generate's; an
interrupt (new requests, cancel) makes it return after the step in progress."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asrgguf import Transcriber, decode_loop
from asrgguf import scheduler as scheduler_mod
from asrgguf.errors import AsrggufError
from asrgguf.generate import REPEAT_MAX_NGRAM, REPEAT_MIN_COUNT, REPEAT_MIN_TOKENS, Batcher, Job, is_repeating
from asrgguf.pieces import iter_pieces
from asrgguf.scheduler import IterFeed, Request

BIG = 10 ** 6


def test_the_library_is_built_and_used_by_default(monkeypatch):
    monkeypatch.delenv("ASRGGUF_DECODE_LOOP", raising=False)
    st_ = decode_loop.status()
    assert st_["loop"] == "c", st_   # .ci/run builds it (tools/build_native.sh)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.5, np.inf, -np.inf, np.nan, 3e38, -3e38]),
                min_size=1, max_size=40),
       st.integers(0, 151936 - 40), st.integers(0, 2))
def test_argmax_is_numpys(values, at, fill):
    """The first maximum, a NaN anywhere wins (its first), ties, infinities, signed zeros; inside a vector of
    the real vocabulary's size (the SIMD body and the tail)."""
    base = [np.full(151936, -np.inf, np.float32), np.zeros(151936, np.float32),
            np.random.default_rng(at).standard_normal(151936).astype(np.float32)][fill]
    x = base.copy()
    x[at:at + len(values)] = values
    assert decode_loop.argmax(x) == int(np.argmax(x))
    short = np.asarray(values, np.float32)
    assert decode_loop.argmax(short) == int(np.argmax(short))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=90), st.integers(1, 5), st.integers(0, 40))
def test_repetition_check_is_generates(ids, period, reps):
    tail = ids[:period] * reps
    for seq in (ids, ids + tail, tail):
        assert decode_loop.is_repeating(seq, REPEAT_MIN_COUNT, REPEAT_MIN_TOKENS, REPEAT_MAX_NGRAM) \
            == is_repeating(seq)


def test_bad_switch_and_missing_library_are_one_line_errors(monkeypatch, tmp_path):
    monkeypatch.setenv("ASRGGUF_DECODE_LOOP", "fast")
    with pytest.raises(AsrggufError, match=r"^ASRGGUF_DECODE_LOOP='fast': expected c, python or auto$"):
        decode_loop.for_decoder(None, set())
    monkeypatch.setenv("ASRGGUF_DECODE_LOOP", "c")
    monkeypatch.setenv("ASRGGUF_DECODE_LOOP_LIB", str(tmp_path / "none.so"))
    monkeypatch.setattr(decode_loop, "_state", {})
    with pytest.raises(AsrggufError) as e:
        decode_loop.for_decoder(None, set())
    assert str(e.value) == (f"ASRGGUF_DECODE_LOOP=c: the decode loop in C is not built ({tmp_path / 'none.so'} "
                            f"missing; tools/build_native.sh)")
    monkeypatch.setenv("ASRGGUF_DECODE_LOOP", "auto")   # auto falls back to the Python loop
    assert decode_loop.for_decoder(None, set()) is None
    assert decode_loop.status()["loop"] == "python"


@pytest.fixture(scope="module", params=["f32", "q8_0"])
def engine(request, gguf_pair, ck_gqa):
    tr = Transcriber.from_gguf(gguf_pair(ck_gqa, request.param)[0], threads=2)
    yield tr
    tr.close()


@pytest.fixture(scope="module")
def pieces(engine, clip5, clip20):
    """clip5 and clip20 encoded once: (prompt, embeddings) to make jobs from."""
    from support.reference import official_wav

    out = []
    for i, c in enumerate((clip5, clip20)):
        p = next(iter_pieces([official_wav(str(c))], 30.0))
        p.index = i
        job = engine.make_job(p, engine.options())
        out.append((job.prompt, job.emb.copy()))
    return out


def make_job(piece, limit: int, guard: bool, exact: bool = False) -> Job:
    prompt, emb = piece
    return Job(prompt, emb.copy(), limit, guard, exact_tokens=exact)


def drive(tr, specs, n_seq, stop_ids, loop, monkeypatch):
    """specs: (piece, limit, guard); jobs join in order as sequences free. Returns the jobs, the order in
    which they finished, llama_decode calls, rows, and step() calls."""
    monkeypatch.setenv("ASRGGUF_DECODE_LOOP", loop)
    monkeypatch.setattr(decode_loop, "SECONDS", 600.0)   # returns only when a job finishes (no time budget)
    jobs = [make_job(*spec) for spec in specs]
    b = Batcher(tr.decoder, stop_ids, n_seq, max(j.n_positions for j in jobs))
    assert (b.loop is None) == (loop == "python")
    queue, order, steps, rows, calls = list(jobs), [], 0, 0, 0
    while b.active or queue:
        while queue and b.free:
            b.add(queue.pop(0))
        done = b.step(BIG)
        calls += 1
        steps, rows = steps + b.last_steps, rows + b.last_rows
        order += [[jobs.index(j) for j in done]] if done else []
    assert b.free == n_seq
    return jobs, order, steps, rows, calls


def test_c_loop_gives_the_python_loops_ids(engine, pieces, monkeypatch):
    """Four jobs: A ends at its token limit (8), B at a stop token (mid-batch: the others go on), C at the
    repetition guard, D (no guard) at its limit; D joins when A leaves. One sequence, then three."""
    short, long_ = pieces
    # the stop token: one B generates at step k (10 <= k < 40) for the first time, never seen by C or D
    ref, _, _, _, _ = drive(engine, [(short, 40, False), (long_, 100, False)], 1, engine.stop_ids, "python",
                            monkeypatch)
    b_ids, c_ids = ref[0].ids, ref[1].ids
    k = next(i for i in range(10, 40) if b_ids[i] not in b_ids[:i] and b_ids[i] not in c_ids)
    stop = set(engine.stop_ids) | {b_ids[k]}
    specs = [(short, 8, True), (short, 40, True), (long_, 100, True), (long_, 50, False)]
    limits = [n for _, n, _ in specs]
    for n_seq in (1, 3):
        py = drive(engine, specs, n_seq, stop, "python", monkeypatch)
        c = drive(engine, specs, n_seq, stop, "c", monkeypatch)
        jobs = py[0]
        # the cases happen: token limit, stop token, repetition guard (random weights loop), token limit
        assert [ended(j, n, stop) for j, n in zip(jobs, limits)] == ["limit", "stop", "repetition", "limit"]
        if n_seq == 1:   # alone, as the reference run
            assert jobs[1].ids == b_ids[:k] and jobs[2].ids == c_ids[:len(jobs[2].ids)] and jobs[3].ids == c_ids[:50]
        else:
            # one at a time, A first: each ends mid-batch while others go on
            assert py[1][0] == [0] and sorted(sum(py[1], [])) == [0, 1, 2, 3] and len(py[1]) == 4
        # the C loop: the same ids and ends, the same llama_decode calls and rows, one call per finish
        assert [(j.ids, j.repetition_stopped, j._next) for j in c[0]] == \
            [(j.ids, j.repetition_stopped, j._next) for j in jobs]
        assert c[1:4] == py[1:4]
        assert c[4] == len(c[1]) < py[4]


def ended(job, limit, stop) -> str:
    if job.repetition_stopped:
        assert is_repeating(job.ids) and len(job.ids) < limit
        return "repetition"
    if len(job.ids) == limit:
        return "limit"
    assert job._next in stop and len(job.ids) < limit
    return "stop"


def test_interrupt_returns_after_the_step_in_progress(engine, pieces, monkeypatch):
    """Set before the call: exactly one step. From another thread during a long run: it comes back early; the
    ids go on as the Python loop's."""
    monkeypatch.setenv("ASRGGUF_DECODE_LOOP", "c")
    monkeypatch.setattr(decode_loop, "SECONDS", 600.0)
    short = pieces[0]
    want = drive(engine, [(short, 40, False)], 1, engine.stop_ids, "python", monkeypatch)[0][0].ids
    monkeypatch.setenv("ASRGGUF_DECODE_LOOP", "c")
    job = make_job(short, 40, False)
    b = Batcher(engine.decoder, engine.stop_ids, 1, job.n_positions)
    b.add(job)
    b.interrupt()
    assert b.step(BIG) == [] and b.last_steps == 1 and len(job.ids) == 1
    assert b.step(BIG) == [job] and job.ids == want and b.last_steps == 38   # the flag was cleared: 39 decodes in all

    job = make_job(short, 3000, False, exact=True)
    b = Batcher(engine.decoder, engine.stop_ids, 1, job.n_positions)
    b.add(job)
    out: dict = {}
    th = threading.Thread(target=lambda: out.update(done=b.step(BIG)))
    th.start()
    time.sleep(0.3)
    b.interrupt()
    th.join(120)
    assert not th.is_alive() and out["done"] == [] and b.active == [job]
    assert 1 <= b.last_steps == len(job.ids) < 3000
    assert job.ids[:40] == want[:len(job.ids[:40])]
    b.cancel(job)
    assert b.free == 1


def test_a_cancel_from_another_thread_stops_a_running_pump(engine, clip5, monkeypatch):
    """The scheduler's cancel interrupts the C loop inside a pump (no time budget, no step limit here): the
    pump comes back, and the next one frees the request's sequence."""
    monkeypatch.setenv("ASRGGUF_DECODE_LOOP", "c")
    monkeypatch.setattr(decode_loop, "SECONDS", 600.0)
    monkeypatch.setattr(decode_loop, "STEPS", BIG)
    opts = engine.options(bench_tokens=3000)
    sched = scheduler_mod.Scheduler(engine)
    req = sched.submit(Request(IterFeed(engine.open_pieces(str(clip5), opts.piece_seconds)[2]), opts))
    th = threading.Thread(target=sched.pump)
    th.start()
    time.sleep(0.5)
    sched.cancel(req)
    th.join(120)
    assert not th.is_alive() and sched.batcher.loop is not None
    assert 1 <= sched.stats["steps"] < 3000 and len(sched.batcher.active) == 1
    sched.pump()
    assert req.cancelled and req.finished and sched.batcher.active == [] and sched.batcher.free == 1
    assert sched.stats["cancelled_jobs"] == 1 and list(req.ready) == []


def test_transcribe_gives_the_same_segments_and_steps(engine, clip20, monkeypatch):
    """Through the scheduler (`Transcriber.transcribe`, 10-s pieces, 2 in parallel): the C loop's segments and
    the scheduler's step and row counts are the Python loop's."""
    out = {}
    for loop in ("python", "c"):
        monkeypatch.setenv("ASRGGUF_DECODE_LOOP", loop)
        sched = engine._scheduler = scheduler_mod.Scheduler(engine)
        segs = list(engine.transcribe(str(clip20), piece_seconds=10, parallel=2, max_new_tokens=60)[0])
        assert (sched.batcher.loop is None) == (loop == "python")
        out[loop] = ([(s.token_ids, s.repetition_stopped) for s in segs], sched.stats["steps"],
                     sched.stats["step_rows"], sched.stats["generated_tokens"])
    engine._scheduler = None
    assert len(out["c"][0]) >= 2 and out["c"] == out["python"]
