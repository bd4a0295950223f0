"""Voice activity (asrgguf/vad.py): Silero VAD's regions over a stream, pieces made of speech, times mapped back.

Expected regions come from silero-vad's own offline `get_speech_timestamps` (its ONNX model through its own
wrapper) over the whole recording, and from the known layout of espeak-ng speech and silences."""
import sys
import tracemalloc

import numpy as np
import pytest

from asrgguf import audio, vad
from asrgguf.errors import AsrggufError
from asrgguf.pieces import SAMPLE_RATE as SR, Piece, Span
from conftest import espeak
from support.demo_speech import pink
from support.speech_text import SENTENCES

VOICE = "en-us+f3"


def silero_reference(wav: np.ndarray, options: vad.VadOptions, piece_seconds: float) -> list[tuple[int, int]]:
    """silero-vad's get_speech_timestamps on the whole array (its import sets torch to 1 thread: undone)."""
    import torch

    n = torch.get_num_threads()
    import silero_vad
    torch.set_num_threads(n)
    o = vad.options_for(options, piece_seconds)
    model = silero_vad.load_silero_vad(onnx=True)
    ts = silero_vad.get_speech_timestamps(
        torch.from_numpy(wav), model, threshold=o.threshold, neg_threshold=o.neg_threshold,
        min_speech_duration_ms=o.min_speech_ms, max_speech_duration_s=o.max_speech_seconds,
        min_silence_duration_ms=o.min_silence_ms, speech_pad_ms=o.speech_pad_ms)
    return [(d["start"], d["end"]) for d in ts]


def blocks_of(wav: np.ndarray, size) -> list[np.ndarray]:
    if size is None:
        return [wav]
    if size == "random":
        rng = np.random.default_rng(5)
        cuts = np.cumsum(rng.integers(1, 3000, size=wav.size // 700 + 2))
        cuts = cuts[cuts < wav.size]
        return np.split(wav, cuts)
    return [wav[i:i + size] for i in range(0, wav.size, size)]


@pytest.fixture(scope="module")
def clips16(data_dir) -> list[np.ndarray]:
    """Three test sentences spoken by the held-out demo voice, at 16 kHz."""
    return [audio.load(str(espeak(data_dir / f"vad{i}.wav", s, VOICE))) for i, s in enumerate(SENTENCES[:3])]


def voiced(x: np.ndarray, level: float = 0.01) -> tuple[int, int]:
    """First and one-past-last sample above `level`: where espeak's clip really speaks."""
    idx = np.flatnonzero(np.abs(x) > level)
    return int(idx[0]), int(idx[-1]) + 1


@pytest.fixture(scope="module")
def layout(clips16):
    """1 s silence, sentence 0, 2 s silence, sentence 1, 1.5 s faint noise, sentence 2, 2.5 s silence;
    with each sentence's voiced extent in the recording."""
    rng = np.random.default_rng(0)
    gaps = [np.zeros(SR, np.float32), np.zeros(2 * SR, np.float32),
            (rng.standard_normal(int(1.5 * SR)) * 1e-3).astype(np.float32), np.zeros(int(2.5 * SR), np.float32)]
    parts, extents, n = [gaps[0]], [], gaps[0].size
    for c, g in zip(clips16, gaps[1:]):
        a, b = voiced(c)
        extents.append((n + a, n + b))
        parts += [c, g]
        n += c.size + g.size
    return np.concatenate(parts), extents


def test_regions_on_speech_with_known_silences(layout):
    wav, extents = layout
    regions = vad.speech_regions(blocks_of(wav, 1600))
    pad = int(0.4 * SR)
    assert len(regions) == len(extents) == 3
    for (s, e), (a, b) in zip(regions, extents):
        # each region holds its sentence, padded by 400 ms give or take a 32-ms window and onset detection
        assert a - pad - int(0.15 * SR) <= s <= a, (s, a)
        assert b <= e <= b + pad + int(0.15 * SR), (e, b)
    assert regions == [tuple(r) for r in silero_reference(wav, vad.VadOptions(), 30.0)]


@pytest.mark.parametrize("block", [None, 1600, "random"])
@pytest.mark.parametrize("case", ["defaults", "short_silence", "max_speech_3s", "max_speech_2s_tight"])
def test_regions_equal_silero_whatever_the_blocks(clips16, block, case):
    """The streaming detector gives silero-vad's offline regions exactly, for one block, 100-ms blocks and
    random block sizes (1 to 3000 samples), including cuts of regions longer than max_speech_seconds."""
    options, piece = {
        "defaults": (vad.VadOptions(), 30.0),
        "short_silence": (vad.VadOptions(min_silence_ms=100, speech_pad_ms=30, threshold=0.6), 30.0),
        "max_speech_3s": (vad.VadOptions(), 3.0),
        "max_speech_2s_tight": (vad.VadOptions(min_silence_ms=50, speech_pad_ms=400, min_speech_ms=0), 2.0),
    }[case]
    rng = np.random.default_rng(1)
    parts = [np.zeros(int(0.3 * SR), np.float32)]
    for c in clips16 * 2:   # gaps of 0.2-3 s: some regions merge, some not
        parts += [c, (rng.standard_normal(int(rng.uniform(0.2, 3.0) * SR)) * 1e-3).astype(np.float32)]
    wav = np.concatenate(parts)
    ref = silero_reference(wav, options, piece)
    got = vad.speech_regions(blocks_of(wav, block), options, piece)
    assert [tuple(r) for r in got] == ref
    assert len(ref) >= 5
    if piece < 30:   # regions fit a piece
        assert max(e - s for s, e in ref) <= piece * SR


def test_isolated_words_are_kept(data_dir):
    """Single demo-vocabulary words with 0.5-1.5 s of silence between them (issue 25's case): every word
    is inside a region (none dropped as too short). Each word is cut to its voiced samples, so the gaps are
    the silences."""
    words = "station Friday seven morning Tom".split()
    gaps = [0.7, 0.5, 1.3, 1.5, 0.7, 0.8]
    parts, extents, n = [], [], 0
    for i, w in enumerate(words):
        g = np.zeros(int(gaps[i] * SR), np.float32)
        c = audio.load(str(espeak(data_dir / f"word_{w}.wav", w, "en-029+f3")))
        c = c[slice(*voiced(c))]
        extents.append((n + g.size, n + g.size + c.size))
        parts += [g, c]
        n += g.size + c.size
    parts.append(np.zeros(int(gaps[-1] * SR), np.float32))
    wav = np.concatenate(parts)
    regions = vad.speech_regions(blocks_of(wav, 1600))
    for a, b in extents:
        assert any(s <= a and b <= e for s, e in regions), ((a, b), regions)
    # the 1.3-s and 1.5-s pauses (longer than min_silence_ms) separate regions, the 0.5-s and 0.7-s ones
    # do not: [station Friday] [seven] [morning Tom]
    assert len(regions) == 3
    kept = sum(e - s for s, e in regions)
    assert kept < wav.size - int(0.5 * SR)




@pytest.mark.parametrize("kind", ["silence", "white", "pink"])
@pytest.mark.parametrize("level", [0.9, 0.05, 0.002])
def test_noise_and_silence_give_no_region(kind, level):
    n = 20 * SR
    rng = np.random.default_rng(int(level * 1000))
    x = {"silence": np.zeros(n, np.float32),
         "white": np.clip(rng.standard_normal(n) * level / 3, -1, 1).astype(np.float32),
         "pink": (pink(n, rng) * level).astype(np.float32)}[kind]
    assert vad.speech_regions(blocks_of(x, 4000)) == []
    assert list(vad.iter_speech_pieces(blocks_of(x, 4000))) == []   # nothing reaches the encoder


# --------------------------------------------------------------------------- pieces and time mapping
def test_packer_exact_arithmetic():
    rec = np.arange(100, dtype=np.float32)
    pk = vad.Packer(limit=10, min_len=6)
    out = []
    out += pk.add(5, rec[5:9])            # 4 samples at 5
    out += pk.add(9, rec[9:12])           # contiguous with it: one span of 7
    out += pk.add(20, rec[20:25])         # 7 + 5 > 10: a new piece
    out += pk.add(40, rec[40:63])         # 23 > 10: cut into 10, 10 and 3, each after the piece before
    out += pk.add(80, rec[80:82])
    out += pk.close()
    assert [p.spans for p in out] == [
        (Span(0, 5, 7),),
        (Span(0, 20, 5),),
        (Span(0, 40, 10),),
        (Span(0, 50, 10),),
        (Span(0, 60, 3), Span(3, 80, 2)),
    ]
    assert [(p.index, p.start, p.length) for p in out] == [(0, 5, 7), (1, 20, 5), (2, 40, 10), (3, 50, 10),
                                                          (4, 60, 22)]
    assert np.array_equal(out[0].wav, rec[5:12])
    assert np.array_equal(out[1].wav, np.r_[rec[20:25], 0])          # zero-padded to min_len
    assert np.array_equal(out[4].wav, np.r_[rec[60:63], rec[80:82], 0])
    assert all(p.wav.dtype == np.float32 for p in out)


def test_time_mapping_exact():
    p = Piece(0, np.zeros(160, np.float32), 1000, 4050, (Span(0, 1000, 100), Span(100, 5000, 50)))
    assert [p.recording_sample(n) for n in (0, 99, 100, 149, 150, 159, -5)] == [1000, 1099, 5000, 5049, 5050,
                                                                                5050, 1000]
    assert p.recording_sample(100, end=True) == 1100      # an end on the boundary: the first span's end
    assert p.recording_sample(101, end=True) == 5001
    assert p.recording_time(100 / SR) == 5000 / SR
    assert p.recording_time(100 / SR, end=True) == 1100 / SR
    assert abs(p.recording_time(120.5 / SR) - 5020.5 / SR) < 1e-12
    assert p.recording_time(1.0) == 5050 / SR              # in the padding: the last span's end
    assert (p.start_s, p.end_s) == (1000 / SR, 5050 / SR)
    plain = Piece(2, np.zeros(10, np.float32), 32000, 10)   # a piece without spans: unchanged behaviour
    assert plain.spans is None and plain.recording_time(0.25) == 2.25 and plain.recording_sample(7) == 32007


@pytest.mark.parametrize("block", [None, 1600])
def test_speech_pieces(layout, clips16, block):
    """Pieces of 8 s from the three sentences (2 s of silence and more between them): the regions packed in
    order, every wav sample is the recording's sample its spans say, nothing longer than a piece."""
    wav, extents = layout
    rec = np.concatenate([wav, wav])          # six sentences, 38 s
    piece_s = 8.0
    regions = vad.speech_regions(blocks_of(rec, block), piece_seconds=piece_s)
    pieces = list(vad.iter_speech_pieces(blocks_of(rec, block), piece_s))
    assert len(regions) == 6 and len(pieces) >= 3
    flat = [(s.start, s.end) for p in pieces for s in p.spans]
    assert flat == [tuple(r) for r in regions]            # regions this far apart never touch
    for i, p in enumerate(pieces):
        assert p.index == i and p.wav.size <= piece_s * SR and p.wav.dtype == np.float32
        n = sum(s.length for s in p.spans)
        assert p.wav.size == n and p.spans[0].piece_start == 0
        for s in p.spans:
            assert np.array_equal(p.wav[s.piece_start:s.piece_start + s.length], rec[s.start:s.end])
        idx = np.arange(n)
        assert np.array_equal(p.wav[idx], rec[[p.recording_sample(int(k)) for k in idx]])
        if i:
            assert p.start >= pieces[i - 1].start + pieces[i - 1].length
    kept = sum(s.length for p in pieces for s in p.spans)
    speech = sum(b - a for a, b in extents) * 2
    assert speech < kept < rec.size * 0.8


def test_pieces_block_independent(layout):
    wav, _ = layout
    a = list(vad.iter_speech_pieces([wav], 5.0))
    b = list(vad.iter_speech_pieces(blocks_of(wav, "random"), 5.0))
    assert [p.spans for p in a] == [p.spans for p in b]
    assert all(np.array_equal(x.wav, y.wav) for x, y in zip(a, b))


def test_flat_memory(clips16):
    """Memory does not grow with the recording: 1 and 6 minutes of speech and silence (100-ms blocks),
    pieces dropped as they come."""
    def stream(seconds):
        sent = np.concatenate([clips16[0], np.zeros(3 * SR, np.float32), clips16[1], np.zeros(SR, np.float32)])
        n = 0
        while n < seconds * SR:
            for i in range(0, sent.size, 1600):
                yield sent[i:i + 1600].copy()
            n += sent.size

    peaks = []
    for minutes in (1, 6):
        tracemalloc.start()
        count = sum(1 for _ in vad.iter_speech_pieces(stream(60 * minutes), 10.0))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert count >= minutes * 4
    # 6 minutes of float32 are 23 MB; the peak stays at a few pieces' worth (a piece is 640 kB): 4.1 and
    # 3.5 MB when measured
    assert peaks[1] < 8_000_000 and peaks[1] < 1.3 * peaks[0] + 500_000, peaks


# --------------------------------------------------------------------------- errors
def test_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "silero_vad", None)
    with pytest.raises(AsrggufError) as e:
        vad.model_path()
    assert str(e.value) == "--vad needs silero-vad: pip install 'asrgguf[vad]'"
    monkeypatch.undo()
    path = vad.model_path()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(AsrggufError) as e:
        vad._session.__wrapped__(path)
    assert str(e.value) == "--vad needs silero-vad: pip install 'asrgguf[vad]'"


def test_piece_too_short_for_the_padding():
    with pytest.raises(AsrggufError) as e:
        list(vad.iter_speech_pieces([np.zeros(SR, np.float32)], 0.8))
    assert str(e.value) == "with --vad, piece_seconds (0.8) must be longer than twice speech_pad_ms plus 32 ms"


@pytest.mark.parametrize("kw, msg", [
    ({"threshold": 1.5}, "vad threshold must be in (0, 1] (got 1.5)"),
    ({"threshold": float("nan")}, "vad threshold must be a finite number (got nan)"),
    ({"neg_threshold": 0.7}, "vad neg_threshold must be in (0, threshold=0.5] (got 0.7)"),
    ({"min_silence_ms": -1}, "vad min_silence_ms must be >= 0 (got -1)"),
    ({"speech_pad_ms": "a"}, "vad speech_pad_ms must be a finite number (got 'a')"),
    ({"max_speech_seconds": 0.5}, "vad max_speech_seconds must be longer than twice speech_pad_ms plus 32 ms "
                                  "(got 0.5)"),
])
def test_bad_options(kw, msg):
    with pytest.raises(AsrggufError) as e:
        vad.speech_regions([np.zeros(SR, np.float32)], vad.VadOptions(**kw))
    assert str(e.value) == msg


# --------------------------------------------------------------------------- with the demo model
def test_demo_transcribes_only_the_speech(data_dir, clips16, tmp_path):
    """The engine's vad=True (and `asrgguf run --vad`): two sentences among 5-10 s silences and 10 s of pink
    noise give the demo model's text of each sentence alone, at its place in the recording; noise and
    silence alone give no text at all (without VAD the demo invents words on both). One region per piece:
    the demo model stops after the first region of a packed piece (docs/speakers.md)."""
    import json
    import subprocess
    import sys

    import support.demo_speech as speech
    import soundfile as sf

    from asrgguf import Transcriber

    texts = [speech.SAMPLE_TEXT, "Tom bought a red bike on Friday."]
    clips = [audio.load(str(espeak(data_dir / f"vad_demo{i}.wav", t, speech.TEST_VOICE))) for i, t in enumerate(texts)]
    z = lambda s: np.zeros(int(s * SR), np.float32)  # noqa: E731
    noise = pink(10 * SR, np.random.default_rng(0)) * 0.05
    rec = np.concatenate([z(5), clips[0], z(10), clips[1], z(5), noise, z(3)])
    where = [(5.0, 5 + clips[0].size / SR)]
    where.append((where[0][1] + 10, where[0][1] + 10 + clips[1].size / SR))
    with Transcriber.from_pretrained("demo", threads=2) as tr:
        alone = [tr.transcribe_all(c, language="English").text for c in clips]
        res = tr.transcribe_all(rec, language="English", vad=True)
        quiet = [tr.transcribe_all(x, vad=True) for x in (noise, z(20))]
        assert all(q.text for q in (tr.transcribe_all(noise), tr.transcribe_all(z(20))))   # invented words
    assert [s.text for s in res.segments] == alone and alone[0] == texts[0]
    assert res.duration == pytest.approx(rec.size / SR)
    for s, (a, b) in zip(res.segments, where):
        assert a - 0.45 <= s.start <= a and b <= s.end <= b + 0.45, (s, a, b)
        assert s.start <= s.sentences[0].start and s.sentences[-1].end <= s.end
    assert [(q.text, q.segments) for q in quiet] == [("", []), ("", [])]
    sf.write(tmp_path / "rec.wav", rec, SR)
    r = subprocess.run([sys.executable, "-m", "asrgguf.cli", "run", "--model", "demo", "--vad", "--language",
                        "English", "--format", "json", "--threads", "2", str(tmp_path / "rec.wav")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [(s["start"], s["end"], s["text"]) for s in json.loads(r.stdout)["segments"]] == \
        [(round(s.start, 3), round(s.end, 3), s.text) for s in res.segments]