"""Word timestamps: Qwen3-ForcedAligner through the GGUF path, against the official `Qwen3ForcedAligner`.

Random-weight aligner checkpoints of two shapes (tests/support/random_checkpoint.py --aligner); the official
wrapper is the reference for the units, the repair of the times, the classes and the words.
"""
from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, speech_with_silences, write_wav
from support.reference import official_classes, official_words
from support.speech_text import SENTENCES

# the f32 decoder's largest score error, in std of a row's scores: 0.03-0.05 measured on these checkpoints
# (final states within 7e-5 of the official ones; the random head reads their small varying part)
MAX_SCORE_ERR = 0.1
ZH = "今天天气很好，我们去公园散步吧。Qwen3 说 3 点见！明天下雨的话就在家里看书。"


@pytest.fixture(scope="session")
def official_aligner():
    import functools

    import torch
    from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForcedAligner

    @functools.lru_cache(maxsize=2)
    def load(path: str):
        return Qwen3ForcedAligner.from_pretrained(path, dtype=torch.float32, device_map="cpu")
    return load


def test_units_as_official():
    from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForceAlignProcessor

    from asrgguf.units import split_units

    off = Qwen3ForceAlignProcessor()
    cases = [(SENTENCES[0] + " It's 3.5% of x-ray's cost, isn't it? (yes)", "English"),
             (ZH, "Chinese"), ("C'est l'été, à 20 h — déjà «fini»!", "French"),
             ("今日はいい天気ですね。明日は雨が降るでしょう。", "Japanese"),
             ("오늘은 날씨가 좋네요. 내일은 비가 올 거예요.", "Korean"), ("Hello 世界 mixed中文text", "German"),
             ("", "English"), ("?!  ...", "English")]
    for text, lang in cases:
        assert split_units(text, lang) == off.encode_timestamp(text, lang)[0], (text, lang)


def test_repair_as_official():
    from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForceAlignProcessor

    from asrgguf.align import repair

    off = Qwen3ForceAlignProcessor()
    rng = np.random.default_rng(0)
    for n in list(range(1, 12)) * 30 + [60, 200]:
        kind = rng.integers(3)
        if kind == 0:
            v = rng.integers(0, 5000, n) * 80.0
        elif kind == 1:  # mostly rising with outliers, as a trained aligner gives
            v = np.sort(rng.integers(0, 400, n)) * 80.0
            bad = rng.random(n) < 0.2
            v[bad] = rng.integers(0, 400, int(bad.sum())) * 80.0
        else:
            v = rng.integers(0, 4, n) * 80.0   # many ties
        assert repair(v) == off.fix_timestamp(v), v.tolist()


def test_quantize_every_outtype_loads(ck_al_gqa, gguf_pair, clip5):
    """Every outtype: a decoder llama.cpp loads (the head as its classifier head, not in the vocabulary)."""
    from asrgguf import gguf_names as names
    from asrgguf.align import Aligner
    from asrgguf.audio import load
    from asrgguf.convert import OUTTYPES
    from asrgguf.gguf_file import read_kv, read_tensor

    wav = load(clip5)
    units = SENTENCES[0].split()
    for outtype in OUTTYPES:
        dec, mm = gguf_pair(ck_al_gqa, outtype)
        kv = read_kv(dec, {names.KEY_TIMESTAMP_TOKEN, names.KEY_TIMESTAMP_MS, "general.architecture"})
        assert kv == {names.KEY_TIMESTAMP_TOKEN: 151705, names.KEY_TIMESTAMP_MS: 80.0,
                      "general.architecture": "qwen3vl"}
        assert read_tensor(dec, "output.weight") is None          # the vocabulary head is token_embd's
        assert read_tensor(dec, names.ALIGNER_HEAD).shape == (5000, 64)
        al = Aligner.from_gguf(dec, mm, device="cpu", dtype="float32", threads=2)
        c = al.classes(wav, units)
        assert c.shape == (2 * len(units),) and 0 <= c.min() and c.max() < 5000
        al.close()


@pytest.mark.parametrize("shape", ["gqa", "mha"])
def test_f32_classes_identical_to_official(shape, ck_al_gqa, ck_al_mha, gguf_pair, official_aligner, clip5, clip20):
    from asrgguf.align import Aligner
    from asrgguf.audio import load

    ck = ck_al_gqa if shape == "gqa" else ck_al_mha
    off = official_aligner(str(ck))
    al = Aligner.from_gguf(*gguf_pair(ck, "f32"), device="cpu", dtype="float32", threads=2)
    distinct, n, undecided = set(), 0, 0
    english = {clip5: SENTENCES[0], clip20: " ".join(SENTENCES)}
    # each shape: one clip in English, the other in Chinese (the two shapes cover all four pairs)
    cases = [(clip5, english[clip5], "English"), (clip20, ZH, "Chinese")] if shape == "gqa" else \
        [(clip5, ZH, "Chinese"), (clip20, english[clip20], "English")]
    for clip, text, lang in cases:
        wav = load(clip)
        units, ref = official_classes(off, wav, text, lang)
        ours = al.scores(wav, units)
        spread = ref.std(axis=1)
        err = np.abs(ours - ref).max(axis=1)
        assert (err <= MAX_SCORE_ERR * spread).all(), (err / spread).max()
        # the class is identical wherever the official lead over the runner-up exceeds twice the
        # row's score error (only there is it decided at this precision)
        top = np.sort(ref, axis=1)
        decided = top[:, -1] - top[:, -2] > 2 * err
        np.testing.assert_array_equal(ours.argmax(1)[decided], ref.argmax(1)[decided])
        n, undecided = n + len(ref), undecided + int((~decided).sum())
        distinct |= set(ref.argmax(1).tolist())
        words = [(w.text, w.start, w.end) for w in al.align(wav, text, lang)]
        ref_words = official_words(off, wav, text, lang)
        assert [w[0] for w in words] == [w[0] for w in ref_words] == units
        if (ours.argmax(1) == ref.argmax(1)).all():
            assert words == ref_words
    assert undecided <= 0.05 * n, (undecided, n)
    assert len(distinct) >= 25   # the random head's classes vary with the input
    al.close()


def test_aligner_errors(ck_al_gqa, ck_gqa, gguf_pair, data_dir):
    from asrgguf.align import Aligner, aligner_language
    from asrgguf.errors import AsrggufError

    with pytest.raises(AsrggufError, match=r"^the aligner does not support Arabic \(it supports Chinese, English, "):
        aligner_language("ar")
    with pytest.raises(AsrggufError, match=r"^alignment needs the language"):
        aligner_language("auto")
    asr_dec, _ = gguf_pair(ck_gqa, "q8_0")
    with pytest.raises(AsrggufError, match=r"not an aligner decoder \(no timestamp head\)"):
        Aligner.from_gguf(asr_dec)
    with pytest.raises(AsrggufError, match=r"not a Qwen3-ForcedAligner checkpoint"):
        Aligner.from_pretrained(ck_gqa)
    al = Aligner.from_gguf(*gguf_pair(ck_al_gqa, "q8_0"), device="cpu", dtype="float32", threads=2)
    long = np.zeros(16000 * 190, np.float32)
    with pytest.raises(AsrggufError, match=r"^<array>: longer than 180 s; the aligner takes at most that at once"):
        al.align(long, "hello", "English")
    assert al.align(np.zeros(16000, np.float32), "?!", "en") == []


def test_missing_splitter_is_one_line(monkeypatch):
    import asrgguf.units as A
    from asrgguf.errors import AsrggufError

    monkeypatch.setitem(sys.modules, "nagisa", None)
    with pytest.raises(AsrggufError, match=r"^Japanese alignment needs the nagisa word splitter: pip install "
                                           r"'asrgguf\[align-ja\]'$"):
        A.split_units("今日は", "Japanese")
    monkeypatch.setattr(A, "_KO_TOKENIZER", None)
    monkeypatch.setitem(sys.modules, "soynlp.tokenizer", None)
    with pytest.raises(AsrggufError, match=r"^Korean alignment needs the soynlp word splitter"):
        A.split_units("오늘은", "Korean")


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "asrgguf.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout)


def test_cli_align_and_languages(ck_al_gqa, gguf_pair, clip5, tmp_path):
    dec, mm = gguf_pair(ck_al_gqa, "f32")
    txt = tmp_path / "t.txt"
    txt.write_text(SENTENCES[0] + "\n", encoding="utf-8")
    r = cli("align", clip5, "--text-file", txt, "--language", "en", "--aligner", dec, "--device", "cpu",
            "--dtype", "float32")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["language"] == "English" and d["timing"] == "word"
    assert [w["text"] for w in d["words"]] == SENTENCES[0].rstrip(".").split()
    assert all(w["start"] <= w["end"] for w in d["words"])
    r = cli("align", clip5, "--text", "hi", "--language", "Arabic", "--aligner", dec)
    assert r.returncode == 1 and r.stderr.startswith("asrgguf: error: the aligner does not support Arabic") \
        and len(r.stderr.splitlines()) == 1
    r = cli("languages")
    lines = r.stdout.splitlines()
    assert lines[1] == "English\ten\taligner" and lines[3] == "Arabic\tar" and len(lines) == 30
    assert sum(ln.endswith("\taligner") for ln in lines) == 11


def _secs(ts: str) -> float:
    h, m, s = ts.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_run_word_timestamps_long(ck_gqa, ck_al_mha, gguf_pair, clips, tmp_path):
    """A long recording through transcription and alignment: words monotonic, inside their segment,
    spread over it; srt and vtt with word-derived times parse with the subtitle libraries."""
    import srt
    import webvtt

    long = write_wav(tmp_path / "long.wav", speech_with_silences(clips, 75.0, seed=3), 22050)
    dec, mm = gguf_pair(ck_gqa, "q8_0")
    al_dec, _ = gguf_pair(ck_al_mha, "q8_0")
    # the aligner found beside the model: copy the pair into one directory
    import shutil

    d = tmp_path / "models"
    d.mkdir()
    for p in (dec, mm) + gguf_pair(ck_al_mha, "q8_0"):
        shutil.copy(p, d / p.name)
    base = ["run", long, "--gguf", d / dec.name, "--max-new-tokens", "24", "--device", "cpu", "--timestamps", "word"]
    r = cli(*base, "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["timing"] == "word" and len(doc["segments"]) >= 3
    n_words = 0
    for s in doc["segments"]:
        ws = s["words"]
        starts = [w["start"] for w in ws]
        assert starts == sorted(starts)
        assert all(s["start"] <= w["start"] <= w["end"] <= s["end"] for w in ws)
        if len(ws) >= 4:   # spread over the piece, not piled at one end
            assert ws[-1]["end"] - ws[0]["start"] >= 0.3 * (s["end"] - s["start"]), s
        n_words += len(ws)
    assert n_words >= 20
    for fmt in ("srt", "vtt"):
        r = cli(*base, "--format", fmt, "--max-line-chars", "30", "--aligner", al_dec)
        assert r.returncode == 0, r.stderr
        if fmt == "srt":
            cues = [(c.start.total_seconds(), c.end.total_seconds(), c.content) for c in srt.parse(r.stdout)]
        else:
            cues = [(_secs(c.start), _secs(c.end), c.text) for c in webvtt.from_buffer(io.StringIO(r.stdout))]
        assert len(cues) >= 3
        assert all(len(line) <= 30 for _, _, t in cues for line in t.splitlines())
        starts = [a for a, _, _ in cues]
        assert starts == sorted(starts) and all(a <= b for a, b, _ in cues)
    r = cli("run", long, "--gguf", dec, "--timestamps", "word")
    assert r.returncode == 1 and "--timestamps word needs an aligner" in r.stderr
    r = cli("run", long, "--gguf", dec, "--aligner", al_dec)
    assert r.stderr == "asrgguf: error: --aligner goes with --timestamps word\n"
    r = cli("run", long, "--gguf", dec, "--timestamps", "word", "--aligner", al_dec, "--piece-seconds", "300")
    assert r.stderr.startswith("asrgguf: error: word timestamps align at most 180 s at once")
