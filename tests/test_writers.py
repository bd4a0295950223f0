"""Subtitle and document writers: srt and vtt that the subtitle libraries parse, times monotonic."""
import io

import pytest

from asrgguf import writers
from asrgguf.parse import join_texts, sentence_times
from asrgguf.results import Segment, Sentence, Transcription


def _fake_result(texts):
    segs, t = [], 0.0
    for i, tx in enumerate(texts):
        s = Segment(i, t, t + 28.5, tx, "English", tx, [])
        s.sentences = [Sentence(**d) for d in sentence_times(tx, s.start, s.end)]
        segs.append(s)
        t += 28.5
    return Transcription("x.wav", "English", join_texts(texts), segs, t)


def test_srt_and_vtt_parse():
    import srt
    import webvtt

    res = _fake_result(["Hello there. This is a test of subtitles, with a long sentence that certainly needs "
                        "to be wrapped over more than two lines because it goes on and on and on! Short?",
                        "", "今天天气很好。我们去公园吧！", "No punctuation at all here"])
    subs = list(srt.parse(writers.to_srt(res)))
    vtt = webvtt.from_buffer(io.StringIO(writers.to_vtt(res)))
    assert len(subs) == len(vtt.captions) == len(writers.cues(res)) >= 7
    starts = [s.start.total_seconds() for s in subs]
    ends = [s.end.total_seconds() for s in subs]
    assert starts == sorted(starts) and all(a <= b for a, b in zip(starts, ends))
    assert starts[0] == 0.0 and ends[-1] == pytest.approx(4 * 28.5)
    assert [c.text for c in vtt.captions] == [s.content for s in subs]
    assert res.text.startswith("Hello there.") and "Short? 今天" not in res.text and "Short?今天" in res.text
