"""Live streams (`Transcriber.stream`): each final is what a file of the utterance's audio gives, token for
token; partials come first; streams of one engine decode together and each gets its own texts."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import espeak

SR = 16000


@pytest.fixture(scope="module")
def demo():
    from asrgguf import Transcriber

    with Transcriber.from_pretrained("demo", threads=2) as tr:
        yield tr


@pytest.fixture(scope="module")
def talk(data_dir):
    """Two sentences of the held-out voice among silences and faint noise, 23 s."""
    import support.demo_speech as speech

    from asrgguf import audio

    texts = [speech.SAMPLE_TEXT, "Tom bought a red bike on Friday."]
    clips = [audio.load(str(espeak(data_dir / f"live{i}.wav", t, speech.TEST_VOICE))) for i, t in enumerate(texts)]
    rng = np.random.default_rng(1)
    z = lambda s: (rng.standard_normal(int(s * SR)) * 1e-4).astype(np.float32)  # noqa: E731
    return np.concatenate([z(2), clips[0], z(3), clips[1], z(2)]), clips


def feed_all(stream, wav, block=1600):
    events = []
    for i in range(0, wav.size, block):
        events += stream.feed(wav[i:i + block])
    return events + stream.finish()


def test_finals_equal_the_utterances_alone(demo, talk):
    """100-ms blocks: two finals, each the token ids of `transcribe` on that utterance's audio (cut at the
    final's own times) and the text of the sentence alone; partials before each final, of its utterance."""
    wav, clips = talk
    events = feed_all(demo.stream(language="English"), wav)
    finals = [e for e in events if e.type == "final"]
    assert [e.utterance for e in finals] == [0, 1]
    # the demo hears the packaged sentence as it hears it alone (the second it mishears either way)
    assert finals[0].text == demo.transcribe_all(clips[0], language="English").text == finals[0].segment.text
    for e in finals:
        cut = wav[round(e.segment.start * SR):round(e.segment.end * SR)]
        assert e.segment.token_ids == demo.transcribe_all(cut, language="English").token_ids
    kinds = [(e.type, e.utterance) for e in events]
    for u in (0, 1):
        first_final = kinds.index(("final", u))
        assert ("partial", u) in kinds[:first_final]                      # a partial came first
        assert all(k != ("partial", u) for k in kinds[first_final:])       # none after its final
    # speech starts where the sentence does (2 s of near-silence first; 200-ms padding)
    assert 1.7 <= finals[0].start <= 2.0 and finals[0].end <= finals[1].start


def test_block_size_does_not_change_finals(demo, talk):
    wav, _ = talk
    a = [e.segment.token_ids for e in feed_all(demo.stream(language="English"), wav, 1600) if e.type == "final"]
    b = [e.segment.token_ids for e in feed_all(demo.stream(language="English", step_seconds=2.0), wav, 3333)
         if e.type == "final"]
    assert a == b and len(a) == 2


def test_two_streams_together_each_get_their_own(demo, talk):
    """Two streams of one engine fed in turn (their pieces share the scheduler's batch): each gets exactly
    the finals it gets alone; silence alone gives no event at all."""
    wav, clips = talk
    alone = [e.segment.token_ids for e in feed_all(demo.stream(language="English"), wav) if e.type == "final"]
    demo.scheduler.reserve(2, 0)
    s1, s2 = demo.stream(language="English", wait=False), demo.stream(language="English", wait=False)
    other = np.concatenate([np.zeros(SR, np.float32), clips[1], np.zeros(3 * SR, np.float32)])
    e1, e2 = [], []
    for i in range(0, max(wav.size, other.size), 1600):
        if i < wav.size:
            e1 += s1.feed(wav[i:i + 1600])
        if i < other.size:
            e2 += s2.feed(other[i:i + 1600])
        demo.scheduler.pump()
    e1 += s1.finish()
    e2 += s2.finish()
    assert [e.segment.token_ids for e in e1 if e.type == "final"] == alone
    alone2 = [e.segment.token_ids for e in feed_all(demo.stream(language="English"), other) if e.type == "final"]
    assert [e.segment.token_ids for e in e2 if e.type == "final"] == alone2 and len(alone2) == 1
    silent = demo.stream()
    assert feed_all(silent, np.zeros(5 * SR, np.float32)) == []


def test_stream_options_checked(demo):
    from asrgguf.errors import AsrggufError

    with pytest.raises(AsrggufError, match=r"^step_seconds must be between 0.1 and 30 \(got 0.01\)$"):
        demo.stream(step_seconds=0.01)
    with pytest.raises(AsrggufError, match=r"^max_utterance_seconds must be between 1 and piece_seconds=30"):
        demo.stream(max_utterance_seconds=60)
    s = demo.stream()
    s.finish()
    with pytest.raises(AsrggufError, match="^the stream is finished$"):
        s.feed(np.zeros(160, np.float32))


def decode_piece(tr, piece, **options):
    """One piece through the engine's scheduler: (token ids, draft tokens accepted)."""
    from asrgguf.scheduler import PushFeed, Request

    feed = PushFeed()
    feed.push(piece)
    feed.end()
    req = tr.scheduler.submit(Request(feed, tr.options(language="English", **options)))
    while not req.finished:
        tr.scheduler.pump()
    assert req.error is None
    return req.ready[0].token_ids, req.stats["draft_accepted"]


def test_a_draft_is_verified_not_trusted(demo, talk):
    """A job's draft (live finals: the last partial's tokens) is kept only while each token is the greedy
    choice: the ids are those of a decode without a draft whatever the draft, and a right draft is all taken."""
    from asrgguf.live import LivePiece

    _, clips = talk
    wav = clips[0]
    ids = demo.transcribe_all(wav, language="English").token_ids
    assert len(ids) > 8

    def piece(**kw):
        return LivePiece(0, wav, 0, wav.size, **kw)
    assert decode_piece(demo, piece()) == (ids, 0)
    # all of it (then the end of turn is the greedy choice)
    assert decode_piece(demo, piece(draft=tuple(ids))) == (ids, len(ids))
    wrong = list(ids)
    wrong[5] = ids[5] + 1
    assert decode_piece(demo, piece(draft=tuple(wrong))) == (ids, 5)          # kept up to the first wrong one
    assert decode_piece(demo, piece(draft=(ids[0] + 1, *ids[1:]))) == (ids, 0)
    assert decode_piece(demo, piece(draft=tuple(ids[:4]))) == (ids, 4)       # a partial's shorter draft
    # at the token limit the last token is a step's (the draft is cut one short of the limit)
    assert decode_piece(demo, piece(draft=tuple(ids)), max_new_tokens=6) == (ids[:6], 5)
    # the official rollback's prefix is taken as given (not checked): it ends up in the ids as it is
    got, _ = decode_piece(demo, piece(prefix=tuple(wrong[:6])))
    assert got[:6] == wrong[:6] and got != ids


@pytest.mark.parametrize("partials", ["draft", "rollback", "full"])
def test_partial_modes_keep_finals_exact(demo, talk, partials):
    """Whatever the partials do (verified draft, the official rollback, from scratch), the finals are the
    token ids of `transcribe` on the utterance's audio; with draft_final the final takes most of its tokens
    from the last partial's (verified)."""
    wav, _ = talk
    s = demo.stream(language="English", partials=partials)
    events = feed_all(s, wav)
    finals = [e for e in events if e.type == "final"]
    assert len(finals) == 2
    for e in finals:
        cut = wav[round(e.segment.start * SR):round(e.segment.end * SR)]
        assert e.segment.token_ids == demo.transcribe_all(cut, language="English").token_ids
    assert all(e.text for e in events if e.type == "partial")
    if partials == "draft":
        assert s._final_req.stats["draft_accepted"] > 0


def test_partial_options_checked(demo):
    from asrgguf.errors import AsrggufError

    with pytest.raises(AsrggufError, match=r"^partials must be one of draft, rollback, full, off \(got 'x'\)$"):
        demo.stream(partials="x")
    with pytest.raises(AsrggufError, match=r"^rollback must be between 0 and 100 tokens \(got -1\)$"):
        demo.stream(rollback=-1)


def test_partials_encode_each_completed_window_once(demo, talk):
    """A 20-s utterance (sentences 0.2 s apart): partials encode through the stream's LiveEncoder, so the
    mel frames encoded over all its partials stay below one open window a partial plus each completed 8-s
    window once (a refresh apart), where from scratch each partial encodes the whole utterance so far;
    the final is still `transcribe` on the utterance."""
    _, clips = talk
    gap = np.zeros(int(0.2 * SR), np.float32)
    one = np.concatenate([np.zeros(SR, np.float32)] + [x for c in clips * 3 for x in (c, gap)] +
                         [np.zeros(2 * SR, np.float32)])
    s = demo.stream(language="English")
    encs = []
    orig = s._maybe_partial

    def spy():
        orig()
        if s._enc is not None and (not encs or encs[-1] is not s._enc):
            encs.append(s._enc)
    s._maybe_partial = spy
    events = feed_all(s, one)
    finals = [e for e in events if e.type == "final"]
    assert len(finals) == 1 and finals[0].end - finals[0].start > 16
    n_partials = sum(e.type == "partial" for e in events)
    assert n_partials >= 10 and len(encs) == 1
    frames = encs[0].frames_encoded
    n_windows = encs[0].n_complete
    assert n_windows >= 2
    assert frames <= n_partials * 800 + (n_windows + 2) * 800
    scratch = sum(100 * k for k in range(1, int(finals[0].end - finals[0].start) + 1))   # 1 s more each step
    assert frames < 0.7 * scratch   # 8900 against 13600 frames (16 s); the gap grows with the length
    cut = one[round(finals[0].segment.start * SR):round(finals[0].segment.end * SR)]
    assert finals[0].segment.token_ids == demo.transcribe_all(cut, language="English").token_ids
