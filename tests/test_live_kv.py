"""A live stream's kept sequence (`generate.KeptSeq`): between the stream's steps the KV cache of the prompt's
prefix and of the audio rows that did not change stays, and a step prefills only from the first changed position.
It must give what a fresh prefill gives (the first token's logits bit for bit at f32, the same ids, the same
partials and finals) and stay a cache: taken by another request when no sequence is free, dropped when the
context is made anew, freed when the stream ends or its client goes away."""
from __future__ import annotations

import numpy as np
import pytest

from asrgguf import Transcriber
from asrgguf.audio import load
from asrgguf.generate import Batcher, Job, KeptSeq
from asrgguf.live import LivePiece
from asrgguf.live_encoder import LiveEncoder
from asrgguf.prompt import build_prompt
from asrgguf.scheduler import IterFeed, PushFeed, Request

SR = 16000
TOKENS = 6


@pytest.fixture(scope="module", autouse=True)
def python_loop():
    """These tests count what each pump prefills and keeps, one decode step per pump as the Python loop takes
    them (the C loop runs many steps a pump; tests/test_decode_loop.py ties the two loops' ids)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASRGGUF_DECODE_LOOP", "python")
        yield


@pytest.fixture(scope="module")
def f32_pair(gguf_pair, ck_gqa):
    return gguf_pair(ck_gqa, "f32")[0]


@pytest.fixture(scope="module")
def engine(f32_pair):
    with Transcriber.from_gguf(f32_pair, threads=2) as tr:
        yield tr


@pytest.fixture(scope="module")
def wav20(clip20):
    return load(str(clip20))


def live_steps(tr, wav, every=2 * SR):
    """A growing utterance's encoder steps, one every 2 s, as a stream's partials make them (refresh=1)."""
    enc = LiveEncoder(tr.encoder, tr.features)
    for end in range(every, wav.size + 1, every):
        enc.feed(wav[enc.n_samples:end])
        yield enc.step(refresh=1)


def n_prefix(tr) -> int:
    return len(build_prompt(tr.decoder.tokenize, 0, "", "English").prefix)


def test_kept_prefix_gives_a_fresh_prefills_logits_bit_for_bit(engine, wav20):
    """The steps of a 23-s utterance on a kept sequence and on a fresh one, side by side in one batch: the
    first token's logits are equal bit for bit (f32) and so are the ids; the kept step reuses the prompt's
    prefix and exactly the rows the LiveEncoder reports unchanged (`changed_from`), so the late steps prefill
    only the open window and the suffix."""
    dec = engine.decoder
    b = Batcher(dec, engine.stop_ids, n_seq=2, n_positions=engine.positions_needed(engine.options()))
    k = KeptSeq()
    total = {"kept": 0, "fresh": 0}
    for i, st in enumerate(live_steps(engine, wav20)):
        p = build_prompt(dec.tokenize, len(st.embeddings), "", "English")
        kept = Job(p, st.embeddings, TOKENS, keep=k)
        b.add(kept)
        logits_kept = dec.logits(-1).copy()
        fresh = Job(p, st.embeddings, TOKENS)
        b.add(fresh)
        assert np.array_equal(logits_kept, dec.logits(-1))
        while b.active:
            b.step()
        assert kept.ids == fresh.ids and len(kept.ids) == TOKENS
        assert fresh.reused == 0 and kept.reused == (0 if i == 0 else n_prefix(engine) + st.changed_from)
        assert kept.prefilled == len(p) - kept.reused and fresh.prefilled == len(p)
        assert b.kept == 1 and b.free == 2 and k.seq >= 0   # kept between steps, free for others
        total["kept"] += kept.prefilled
        total["fresh"] += fresh.prefilled
    # the last step (22 s): two completed windows (208 rows) kept, the open one (78 rows) and the suffix prefilled
    assert st.n_cached == st.changed_from == 208 and len(st.embeddings) == 286
    assert kept.prefilled == len(st.embeddings) - 208 + len(p.suffix)
    assert total["kept"] < 0.6 * total["fresh"]
    b.release(k)
    assert b.kept == 0 and b.free == 2 and k.seq == -1


def decode(tr, piece, **options):
    """One piece through the engine's scheduler: the finished request (ids in ready[0], counts in stats)."""
    feed = PushFeed()
    feed.push(piece)
    feed.end()
    req = tr.scheduler.submit(Request(feed, tr.options(language="English", max_new_tokens=TOKENS, **options),
                                      max_active=1))
    while not req.finished:
        tr.scheduler.pump()
    assert req.error is None
    return req


def test_a_kept_sequence_is_a_cache_not_a_reservation(f32_pair, wav20, clip5):
    """One sequence (n_seq 1) kept by a stream: a file takes it (same ids as alone) and the stream's next step
    prefills anew; a context made larger drops it; `release` frees it and a released one is never kept again.
    Every step's ids equal a fresh prefill's."""
    with Transcriber.from_gguf(f32_pair, threads=2) as tr:
        sched = tr.scheduler
        want_file = [s.token_ids for s in tr.transcribe(str(clip5), bench_tokens=TOKENS)[0]]
        steps = [st.embeddings for st in live_steps(tr, wav20[:12 * SR])]   # 2, 4, ... 12 s
        fresh = [decode(tr, LivePiece(0, None, 0, 1, embed=lambda e=e: e)).ready[0].token_ids for e in steps]
        k = KeptSeq()

        def step(i):
            r = decode(tr, LivePiece(0, None, 0, 1, embed=lambda: steps[i], keep=k))
            assert r.ready[0].token_ids == fresh[i]
            return r.stats["reused_tokens"]
        n0 = n_prefix(tr)
        # 10 s: the first window completed (its rows differ from the 2-s open window's); 12 s: it is kept
        assert step(0) == 0 and step(4) == n0 and step(5) == n0 + 104 and sched.batcher.kept == 1 == sched.n_seq
        assert [s.token_ids for s in tr.transcribe(str(clip5), bench_tokens=TOKENS)[0]] == want_file
        assert k.seq == -1 and sched.batcher.kept == 0                     # the file took the sequence
        assert step(5) == 0 and step(5) == n0 + len(steps[5])              # the same rows again: all of them
        n_ctx = sched.n_ctx
        tr.transcribe_all(np.concatenate([wav20, wav20]), piece_seconds=60, bench_tokens=TOKENS)
        assert sched.n_ctx > n_ctx and sched.batcher.kept == 0             # made anew: nothing kept
        assert step(5) == 0 and step(5) == n0 + len(steps[5])
        sched.release(k)                                                   # no pump runs: freed at once
        assert sched.batcher.kept == 0 and sched.batcher.free == 1 and k.released
        assert step(4) == 0 and sched.batcher.kept == 0


def test_kept_sequences_of_two_streams_and_the_oldest_taken(f32_pair, wav20):
    """n_seq 2: two streams keep one sequence each; a third takes the one idle longest; a file with
    parallel=2 still gets both sequences at once."""
    with Transcriber.from_gguf(f32_pair, threads=2) as tr:
        sched = tr.scheduler
        sched.reserve(2, 0)
        e = [st.embeddings for st in live_steps(tr, wav20[:10 * SR], every=5 * SR)]
        ks = [KeptSeq() for _ in range(3)]
        decode(tr, LivePiece(0, None, 0, 1, embed=lambda: e[0], keep=ks[0]))
        decode(tr, LivePiece(0, None, 0, 1, embed=lambda: e[0], keep=ks[1]))
        assert sched.batcher.kept == 2 and {ks[0].seq, ks[1].seq} == {0, 1}
        assert decode(tr, LivePiece(0, None, 0, 1, embed=lambda: e[1], keep=ks[1])).stats["reused_tokens"] > 0
        decode(tr, LivePiece(0, None, 0, 1, embed=lambda: e[1], keep=ks[2]))   # takes ks[0]'s, idle longest
        assert ks[0].seq == -1 and ks[1].seq >= 0 and ks[2].seq >= 0 and sched.batcher.kept == 2
        req = sched.submit(Request(IterFeed(tr.open_pieces(wav20, 10)[2]),
                                   tr.options(piece_seconds=10, bench_tokens=TOKENS), max_active=2))
        sched.pump()
        assert len(sched.batcher.active) == 2 and sched.batcher.kept == 0 and ks[1].seq == ks[2].seq == -1
        while not req.finished:
            sched.pump()
        assert len(req.ready) == 3 and sched.batcher.free == 2


def test_close_mid_stream_frees_the_kept_sequence(engine, clip5):
    """A stream's partials keep its sequence between steps; closing the stream (a disconnect) frees it at
    once, with a partial decoding (wait=False) or not."""
    sched = engine.scheduler
    wav = np.concatenate([np.zeros(SR // 2, np.float32), load(str(clip5))])
    for wait in (True, False):
        s = engine.stream(language="English", wait=wait, max_new_tokens=TOKENS)
        events = []
        for i in range(0, 3 * SR, 1600):
            events += s.feed(wav[i:i + 1600])
            if not wait and s._partial is not None:
                sched.pump()   # admitted: the partial's job holds the sequence now
                break
        if wait:
            assert any(e.type == "partial" for e in events) and sched.batcher.kept == 1
        else:
            assert len(sched.batcher.active) == 1 and sched.batcher.active[0].keep is s._kv
        s.close()
        assert sched.batcher.kept == 0 and not sched.batcher.active and sched.batcher.free == sched.n_seq


@pytest.fixture(scope="module")
def demo():
    with Transcriber.from_pretrained("demo", threads=2) as tr:
        yield tr


def test_demo_stream_with_and_without_kept_sequence(demo, data_dir):
    """A 12-s utterance (two sentences twice) in 100-ms blocks: partials and final are the same with and without
    the kept sequence; with it the steps after the first 8-s window prefill far less, and the final (its
    offline encoder's rows equal the cached windows' bit for bit here) reuses the first window: it still equals
    `transcribe` on the utterance."""
    import support.demo_speech as speech
    from conftest import espeak

    from asrgguf import audio

    texts = [speech.SAMPLE_TEXT, "Tom bought a red bike on Friday."]
    clips = [audio.load(str(espeak(data_dir / f"live{i}.wav", t, speech.TEST_VOICE))) for i, t in enumerate(texts)]
    gap = np.zeros(int(0.2 * SR), np.float32)
    wav = np.concatenate([np.zeros(SR, np.float32)] + [x for c in clips * 2 for x in (c, gap)] +
                         [np.zeros(2 * SR, np.float32)])
    runs = {}
    n0 = n_prefix(demo)
    for keep in (True, False):
        reqs = []
        submit = demo.scheduler.submit
        demo.scheduler.submit = lambda r: reqs.append(r) or submit(r)
        try:
            s = demo.stream(language="English", keep_kv=keep)
            events = []
            for i in range(0, wav.size, 1600):
                events += s.feed(wav[i:i + 1600])
            events += s.finish()
        finally:
            demo.scheduler.submit = submit
        assert demo.scheduler.batcher.kept == 0 and (s._kv is None) == (not keep)   # finish freed it
        steps = [(r.stats["prompt_tokens"], r.stats["prefilled_tokens"], r.stats["reused_tokens"]) for r in reqs
                 if r is not s._final_req]
        f = s._final_req.stats
        runs[keep] = ([(e.type, e.text, e.start, e.end, e.segment.token_ids if e.segment else None) for e in events],
                      steps, (f["prompt_tokens"], f["prefilled_tokens"], f["reused_tokens"]))
    (ev, steps, final), (ev0, steps0, final0) = runs[True], runs[False]
    kinds = [x[0] for x in ev]
    assert ev == ev0 and kinds.count("final") == 1 and kinds.count("partial") >= 8
    assert [p for p, _, _ in steps] == [p for p, _, _ in steps0] and all(r == 0 for _, _, r in steps0)
    # the first partial starts the stream's sequence; each later one keeps at least the prompt's prefix, the
    # late ones the first window too
    assert steps[0][2] == 0 and all(r >= n0 for _, _, r in steps[1:]) and max(r for _, _, r in steps) >= n0 + 104
    assert sum(pf for _, pf, _ in steps) < 0.75 * sum(pf for _, pf, _ in steps0)
    assert final[2] >= n0 + 104 and final0[2] == 0 and final[1] < final0[1] - 104
    _, _, start, end, ids = ev[kinds.index("final")]
    assert ids == demo.transcribe_all(wav[round(start * SR):round(end * SR)], language="English").token_ids


@pytest.fixture(scope="module")
def two_sentences(data_dir):
    """The demo's two held-out-voice sentences 0.2 s apart (one utterance: the detector needs 0.5 s of
    silence, and a silence begins inside it), between 1 s and 2 s of silence."""
    import support.demo_speech as speech
    from conftest import espeak

    from asrgguf import audio

    texts = [speech.SAMPLE_TEXT, "Tom bought a red bike on Friday."]
    clips = [audio.load(str(espeak(data_dir / f"live{i}.wav", t, speech.TEST_VOICE))) for i, t in enumerate(texts)]
    z = lambda s: np.zeros(int(s * SR), np.float32)  # noqa: E731
    return np.concatenate([z(1), clips[0], z(0.2), clips[1], z(2)])


@pytest.mark.parametrize("wait", [True, False])
def test_speculative_final_is_verified_and_dropped_when_speech_resumes(demo, two_sentences, monkeypatch, wait):
    """speculative_final: when the detector's silence begins the utterance is decoded as it would then end; the
    final with the same samples takes its embeddings and its ids as a verified draft (all accepted, the kept
    sequence holding every row: only the suffix and the draft are prefilled) and equals `transcribe` on the
    utterance; a silence that speech ends (inside the utterance) drops its speculative decode. wait=False: nothing is
    pumped while feeding, so the final waits for its speculative decode."""
    import asrgguf.live as live

    made = []

    class Spy(live._Spec):
        def __init__(self, region, wav):
            super().__init__(region, wav)
            made.append(self)
    monkeypatch.setattr(live, "_Spec", Spy)
    waited = []
    poll = live._FinalFeed.poll

    def spy_poll(feed):
        head = feed._q[0] if feed._q else None
        waited.append(getattr(head, "spec", None) is not None and not head.spec.req.finished)
        return poll(feed)
    monkeypatch.setattr(live._FinalFeed, "poll", spy_poll)
    encodes = []
    encode = demo.encode
    monkeypatch.setattr(demo, "encode", lambda w: encodes.append(w.size) or encode(w))
    wav = two_sentences
    s = demo.stream(language="English", speculative_final=True, wait=wait)
    events = []
    for i in range(0, wav.size, 1600):
        events += s.feed(wav[i:i + 1600])
    events += s.finish()
    while not s._final_req.finished:
        demo.scheduler.pump()
    events += s._take()
    finals = [e for e in events if e.type == "final"]
    assert len(finals) == 1
    seg = finals[0].segment
    region = (round(seg.start * SR), round(seg.end * SR))
    n_encodes = len(encodes)
    assert n_encodes == sum(sp.emb is not None for sp in made)   # the final did not encode again
    assert seg.token_ids == demo.transcribe_all(wav[region[0]:region[1]], language="English").token_ids
    used = [sp for sp in made if sp.region == region]
    assert len(used) == 1 and len(made) >= 2 and used[0].ids == tuple(seg.token_ids)   # the gap's was dropped
    f = s._final_req.stats
    p = build_prompt(demo.decoder.tokenize, 0, "", "English")
    assert f["draft_accepted"] == len(seg.token_ids)
    assert f["reused_tokens"] == f["prompt_tokens"] - len(p.suffix)
    assert f["prefilled_tokens"] == len(p.suffix) + len(seg.token_ids)
    assert any(waited) != wait   # unpumped, the final waited for its speculative decode
