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
