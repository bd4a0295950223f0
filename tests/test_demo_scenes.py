"""The demo model's real-shaped material (tests/support/demo_scenes.py, issue 25): the noises have the
spectra and levels asked for, and a laid-out clip's word times are where its words were put."""
import random

import numpy as np
import pytest

import support.demo_scenes as scenes
import support.demo_speech as speech


@pytest.mark.parametrize("kind,slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_noise_spectra(kind, slope):
    """Power falls as 1/f**k: the fitted log-log slope of the averaged spectrum, 50 Hz to 5 kHz."""
    x = scenes.noise(kind, 16 * 16000, np.random.default_rng(1))
    frames = x[: 15 * 16384].reshape(-1, 16384) * np.hanning(16384)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(0)
    f = np.fft.rfftfreq(16384, 1 / 16000)
    band = (f >= 50) & (f <= 5000)
    fitted = np.polyfit(np.log10(f[band]), np.log10(power[band]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.1)
    assert np.abs(x).max() == pytest.approx(1.0)


def test_music_is_tonal():
    """The music-like noise: most of its power within 3 % of the scale's notes and their harmonics."""
    x = scenes.music(8 * 16000, np.random.default_rng(2))
    power = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(x.size, 1 / 16000)
    notes = {110.0 * 2 ** ((12 * o + s) / 12) * k for o in range(3) for s in (0, 2, 4, 7, 9) for k in range(1, 5)}
    near = np.zeros(f.size, bool)
    for n in notes:
        near |= np.abs(f - n) <= 0.03 * n
    assert power[near].sum() / power.sum() > 0.7


@pytest.mark.parametrize("kind", scenes.NOISES)
def test_add_noise_snr(kind):
    rng = np.random.default_rng(3)
    speech_ = np.sin(np.arange(16000) / 5).astype(np.float32) * 0.3
    mixed = scenes.add_noise(speech_, kind, 12.0, rng, speech_rms=scenes.rms(speech_))
    snr = 20 * np.log10(scenes.rms(speech_) / scenes.rms(mixed - speech_))
    assert snr == pytest.approx(12.0, abs=0.01)


def test_split_words_keeps_the_text():
    r = random.Random(0)
    for text in speech.held_out(50):
        for how in ("whole", "words", "phrases"):
            chunks = scenes.split_words(text, r, how)
            assert " ".join(chunks) == text
            assert len(chunks) == {"whole": 1, "words": len(text.split())}.get(how, len(chunks))
            assert how != "phrases" or 2 <= len(chunks) <= 4 or len(text.split()) < 2


def test_isolated_set_words_apart():
    """Isolated words: each word's espeak-ng span holds sound, and 0.5-1.5 s of digital silence lies between
    one word's end and the next one's start; the text is the words in order."""
    made = scenes.test_set("isolated", 4)
    assert [t for _, t, _ in made] == scenes.test_texts("isolated", 4)
    for x, text, spans in made:
        assert len(spans) == len(text.split()) and 3 <= len(spans) <= 6
        for (a, b), (c, _) in zip(spans, spans[1:]):
            assert 0.5 <= c - b <= 1.5 + 0.2, (b, c)     # espeak-ng starts a word up to ~0.1 s into its samples
        for a, b in spans:
            assert scenes.rms(x[int(a * 16000):int(b * 16000)]) > 0.01
        # between words the laid-out gap: at least 0.5 s of digital silence in one stretch
        for (_, b), (c, _) in zip(spans, spans[1:]):
            zero = np.r_[False, x[int(b * 16000):int(c * 16000)] == 0, False].astype(np.int8)
            edges = np.flatnonzero(np.diff(zero))
            assert (edges[1::2] - edges[::2]).max() >= 0.5 * 16000 - 1


def test_pauses_set_is_the_continuous_text_spread_out():
    cont = scenes.test_set("continuous", 6)
    paused = scenes.test_set("pauses", 6)
    for (x0, t0, w0), (x1, t1, w1) in zip(cont, paused):
        assert t0 == t1 and len(w0) == len(w1)
        assert x1.size > x0.size


def test_training_labels_follow_the_layout(tmp_path, monkeypatch):
    """tools/train_demo.py's per-frame labels of a laid-out clip: each piece's phonemes and word tokens where
    the piece was put (espeak-ng's phoneme events, shifted), silence and no token in the gap between."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import train_demo
    from qwen_asr.core.transformers_backend import Qwen3ASRProcessor

    from asrgguf import demo

    tok = Qwen3ASRProcessor.from_pretrained(demo.CHECKPOINT).tokenizer
    chunks = ["Seven red", "boxes."]
    # the trainer's start-up check (library == command) holds in a fresh process only: libespeak-ng keeps
    # some voice state from the syntheses of earlier tests in this one (seen: a different sample stream)
    monkeypatch.setattr(train_demo, "check_library_matches_cli", lambda es: None)
    clips = train_demo.Clips.synthesize([(c, "en-us+m3", 160, 50) for c in chunks], tmp_path)
    gap = 16000
    offsets = [4000, 4000 + len(clips.wavs[0]) + gap]
    n = 200
    phones, toks = train_demo.scene_labels(clips, chunks, tok, " ".join(chunks), list(zip((0, 1), offsets)), n)
    centre = ((np.arange(n) // 13) * 100 + (np.arange(n) % 13) * 8 + 4) * 160
    in_gap = (centre >= offsets[0] + clips.ends[0]) & (centre < offsets[1])
    assert in_gap.sum() >= 10 and not phones[in_gap].any() and (toks[in_gap] == -100).all()
    boxes = tok(" boxes", add_special_tokens=False)["input_ids"]
    second = (centre >= offsets[1] + clips.starts[1][0] + 800) & (centre < offsets[1] + clips.ends[1] - 800)
    assert second.sum() >= 5 and set(toks[second]) <= set(boxes)
    seven = tok("Seven", add_special_tokens=False)["input_ids"]
    first = (centre >= offsets[0] + 800) & (centre < offsets[0] + clips.starts[0][np.flatnonzero(clips.positions[0] > 1)[0]])
    assert first.sum() >= 3 and set(toks[first]) <= set(seven)
    assert phones[second].any() and phones[first].any()


def test_training_splits_option():
    """--splits (tools/train_demo.py, both trainers): the shares of sentences spoken whole, word by word and
    in pieces reach training_runs; shares that are not three adding up to 1 are a one-line usage error."""
    import argparse
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import train_demo

    items = [(t, "en-us+m3", 160, 50) for t in speech.held_out(40)]
    whole = train_demo.splits("1,0,0")
    assert whole == (("whole", 1.0), ("words", 0.0), ("phrases", 0.0))
    chunks, runs, texts = scenes.training_runs(items, 0, whole)
    assert [c for c, _, _, _ in chunks] == texts == [t for t, _, _, _ in items] and all(len(r) == 1 for r in runs)
    chunks, runs, _ = scenes.training_runs(items, 0, train_demo.splits("0,1,0"))
    assert [c for c, _, _, _ in chunks] == [w for t, _, _, _ in items for w in t.split()]
    assert scenes.training_runs(items, 0) == scenes.training_runs(items, 0, train_demo.splits("0.45,0.25,0.30"))
    for bad in ("0.5,0.5", "0.5,0.6,0.1", "a,b,c", "-0.5,1,0.5"):
        with pytest.raises(argparse.ArgumentTypeError, match="three shares WHOLE,WORDS,PHRASES adding up to 1"):
            train_demo.splits(bad)


def test_freeze_encoder_needs_init(capsys):
    """tools/train_demo.py --freeze-encoder keeps a checkpoint's encoder: without --init it is a usage error."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    import train_demo

    with pytest.raises(SystemExit) as e:
        train_demo.main(["--freeze-encoder", "--steps", "1"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith(
        "error: --freeze-encoder needs --init (a checkpoint whose encoder to keep)")
