"""The built-in demo model (asrgguf/data/demo, made by tools/train_demo.py) really transcribes, and it
is an official Qwen3-ASR: the official qwen-asr on its checkpoint gives asrgguf's f32 text, its own
vocabulary tokenizes alike in transformers and llama.cpp, and the packaged GGUF pair is exactly what
the quantizer makes of the checkpoint. Clips: held-out sentences in the held-out voice, made here.
"""
import filecmp
import subprocess
import sys

import numpy as np
import pytest

import support.demo_speech as speech
from asrgguf import demo
from conftest import espeak
from support.demo_speech import SPEED, wer
from support.reference import (official_classes, official_model, official_prompt_ids, official_tokens, official_wav,
                       official_words)

N_CLIPS = 12     # held-out sentences: 6 of the templates, 2 digit strings, 4 of random words
N_OFFICIAL = 6   # of them through the official package (512 tokens each)
N_ALIGN = 12     # held-out sentences through the demo aligner
N_ALIGN_OFFICIAL = 6   # of the clips, through the official Qwen3ForcedAligner on the demo aligner's weights
ALIGN_MEAN_MS, ALIGN_MAX_MS = 80, 250   # measured: 45-46 ms mean (the sample, 200 held-out sentences), 108 ms at most on the sample


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("demo")
    return [(espeak(d / f"{i}.wav", text, speech.TEST_VOICE, SPEED), text)
            for i, text in enumerate(speech.held_out(N_CLIPS))]


@pytest.fixture(scope="module")
def f32_transcriber(tmp_path_factory):
    from asrgguf import Transcriber
    from asrgguf.convert import quantize_checkpoint

    pair = quantize_checkpoint(demo.CHECKPOINT, "f32", tmp_path_factory.mktemp("demo-f32"), "f32", progress=False)
    tr = Transcriber.from_gguf(*pair, threads=2)
    yield tr
    tr.close()


def test_run_model_demo_transcribes(clips):
    """`asrgguf run --model demo` (q8_0 decoder): WER <= 10 % on held-out speech (docs/demo.md: 3 % over
    500 sentences); the packaged sample word for word."""
    paths = [str(p) for p, _ in clips] + [str(demo.SAMPLE)]
    r = subprocess.run([sys.executable, "-m", "asrgguf.cli", "run", "--model", "demo", *paths, "--threads", "2"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    hyps = r.stdout.splitlines()
    assert len(hyps) == len(paths)
    refs = [t for _, t in clips]
    assert wer(refs, hyps[:-1]) <= 0.10, list(zip(refs, hyps))
    assert hyps[-1] == demo.SAMPLE_TEXT.read_text().strip() == "Anna and Tom went to the station on Friday."


def test_official_gives_the_same_text(clips, f32_transcriber):
    """The official qwen-asr on the checkpoint (transformers, float32, greedy): Qwen3ASRModel.transcribe()
    gives asrgguf's f32 text, and its generated ids, stopped at this vocabulary's end ids, are asrgguf's.
    The official generate() stops only at the Qwen2 end ids, which this vocabulary lacks, so it runs to
    max_new_tokens: at the package's default (512) the model must say nothing but <|endoftext|> there."""
    from asrgguf.prompt import build_prompt

    model = official_model(str(demo.CHECKPOINT), max_new_tokens=512)
    for path, text in clips[:N_OFFICIAL]:
        res = f32_transcriber.transcribe_all(str(path), repetition_guard=False)  # the official has no guard
        official = model.transcribe(str(path))[0]
        assert (res.language, res.text) == (official.language, official.text)
        assert res.language == "English" and res.text
        wav = official_wav(str(path))
        assert res.token_ids == official_tokens(model, wav)
    pad = model.processor.tokenizer.convert_tokens_to_ids("<|audio_pad|>")
    for context, language in (("", None), ("Names: Anna, Tom.", "English")):
        ids = official_prompt_ids(model, wav, context, language)
        assert build_prompt(f32_transcriber.decoder.tokenize, ids.count(pad), context, language).token_ids(pad) == ids


def test_gguf_vocabulary_tokenizes_as_transformers(f32_transcriber):
    """The demo's own byte-level BPE (about 1k tokens + Qwen3-ASR's added tokens) through the GGUF."""
    from transformers import AutoTokenizer

    from asrgguf.prompt import prompt_text

    hf = AutoTokenizer.from_pretrained(demo.CHECKPOINT)
    dec = f32_transcriber.decoder
    texts = [*prompt_text(), *prompt_text("Context: Ünïcode, 2024 <b>tags</b>\n\n  spaces\ttabs", "English"),
             "language English<asr_text>Hello world.", "It's nine o'clock, isn't it?  Yes!!", "日本語のテキスト 😀",
             "zebra quokka xylophone", " leading", "trailing ", *speech.held_out(100)]
    for t in texts:
        ids = hf(t, add_special_tokens=False)["input_ids"]
        assert dec.tokenize(t) == ids, t
        assert dec.detokenize(ids) == hf.decode(ids, skip_special_tokens=True), t
    assert dec.n_vocab == len(hf) + (-len(hf)) % 64  # the token list covers the padded embedding table


def test_packaged_pair_is_the_quantizer_output(tmp_path):
    from asrgguf.convert import quantize_checkpoint

    dec, mm = quantize_checkpoint(demo.CHECKPOINT, "q8_0", tmp_path, "f16", progress=False)
    assert filecmp.cmp(dec, demo.DECODER, shallow=False), "re-run: asrgguf quantize asrgguf/data/demo/qwen3-asr-demo"
    assert filecmp.cmp(mm, demo.MMPROJ, shallow=False)
    assert demo.DECODER.stat().st_size + demo.MMPROJ.stat().st_size <= 25_000_000


def test_demo_ships_q8_0_only():
    from asrgguf import AsrggufError, Transcriber

    with pytest.raises(AsrggufError, match=r"^the demo model ships as q8_0 only; for f16: asrgguf quantize "):
        Transcriber.from_pretrained("demo", outtype="f16")


# --- the demo aligner (asrgguf/data/demo/qwen3-aligner-demo-q8_0.gguf, made by tools/train_demo_aligner.py)
# Expected times are espeak-ng's own word boundaries (libespeak-ng's word events; the library gives the
# command's samples), never the aligner's.

def espeak_words(text: str, voice: str, speed: int) -> list:
    """[(start s | None, end s | None)] for each word of text, as espeak-ng reports them."""
    from support.demo_speech import espeak_word_times

    return espeak_word_times([text], voice, speed)[0][2]


def boundary_errors(words, spans) -> list[float]:
    from support.demo_speech import boundary_errors

    return [e for _, e in boundary_errors(words, spans)]


def test_run_model_demo_word_times():
    """`asrgguf run --model demo --timestamps word --format json` on the packaged sample (espeak-ng's
    command, held-out voice, its default speed 165): the sample's nine words, monotonic, inside the
    segment, each boundary within ALIGN_MAX_MS of espeak-ng's and ALIGN_MEAN_MS on average."""
    import json

    from asrgguf.results import Word

    r = subprocess.run([sys.executable, "-m", "asrgguf.cli", "run", "--model", "demo", "--timestamps", "word",
                        "--format", "json", "--quiet", "--threads", "2", str(demo.SAMPLE)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["timing"] == "word"
    (seg,) = doc["segments"]
    words = seg["words"]
    sample = demo.SAMPLE_TEXT.read_text().strip()
    assert [w["text"] for w in words] == [w.strip(".") for w in sample.split()]
    assert all(seg["start"] <= w["start"] <= w["end"] <= seg["end"] for w in words)
    assert all(a["end"] <= b["start"] for a, b in zip(words, words[1:]))
    errs = boundary_errors([Word(**w) for w in words], espeak_words(sample, speech.TEST_VOICE, 165))
    assert len(errs) == 18
    assert max(errs) <= ALIGN_MAX_MS / 1000 and sum(errs) / len(errs) <= ALIGN_MEAN_MS / 1000, errs


def test_demo_aligner_on_held_out_speech():
    """The Aligner ("demo") on N_ALIGN held-out sentences in the held-out voice, given their text: mean
    absolute boundary error against espeak-ng's <= ALIGN_MEAN_MS (docs/demo.md: the 200-sentence figure)."""
    from asrgguf.align import Aligner
    from support.demo_speech import espeak_word_times as reference

    texts = speech.held_out(N_ALIGN)
    errs = []
    with Aligner.load("demo", threads=2) as al:
        for text, (wav, sr, spans) in zip(texts, reference(texts, speech.TEST_VOICE, SPEED)):
            errs += boundary_errors(al.align((wav, sr), text, "English"), spans)
    assert len(errs) >= 2 * N_ALIGN
    assert sum(errs) / len(errs) <= ALIGN_MEAN_MS / 1000, sorted(errs)[-5:]


def test_align_cli_with_demo_aligner(tmp_path):
    """`asrgguf align --aligner demo` (the Makefile's word times come from run; this is the known-text path)."""
    import json

    r = subprocess.run([sys.executable, "-m", "asrgguf.cli", "align", "--aligner", "demo", "--text-file",
                        str(demo.SAMPLE_TEXT), "--language", "en", "--threads", "2", str(demo.SAMPLE)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [w["text"] for w in doc["words"]] == ["Anna", "and", "Tom", "went", "to", "the", "station", "on", "Friday"]
    assert doc["model"]["decoder"].endswith("qwen3-aligner-demo-q8_0.gguf")
    assert doc["model"]["mmproj"].endswith("mmproj-qwen3-asr-demo-f16.gguf")


@pytest.fixture(scope="module")
def demo_aligner_checkpoint(tmp_path_factory):
    """An official Qwen3-ForcedAligner checkpoint holding the packaged demo aligner's weights: its decoder
    and head read back from the q8_0 GGUF (dequantized to float32), its audio encoder the ASR checkpoint's
    (the aligner trained with it frozen), config and tokenizer as tools/train_demo_aligner.py makes them.
    (The trained bfloat16 checkpoint itself is not packaged: 15 MB.)"""
    import torch
    from qwen_asr.core.transformers_backend import Qwen3ASRConfig, Qwen3ASRProcessor
    from support.random_checkpoint import mark_aligner
    from safetensors.torch import load_file, save_file
    from support.random_checkpoint import aligner_config

    from asrgguf import gguf_names as names
    from asrgguf.gguf_file import read_tensor

    out = tmp_path_factory.mktemp("demo-aligner") / "qwen3-aligner-demo"
    proc = Qwen3ASRProcessor.from_pretrained(demo.CHECKPOINT)
    cfg = aligner_config(Qwen3ASRConfig.from_pretrained(demo.CHECKPOINT), proc.tokenizer)
    sd = {}
    for key, value in load_file(demo.CHECKPOINT / "model.safetensors").items():
        if key.startswith("thinker.audio_tower."):
            sd[key] = value.float()
        elif key.startswith("thinker.model."):
            t = read_tensor(demo.ALIGNER, names.text_to_gguf(key[len("thinker.model."):]))
            assert t is not None and t.shape == tuple(value.shape), key
            sd[key] = torch.from_numpy(np.ascontiguousarray(t))
    sd["thinker.lm_head.weight"] = torch.from_numpy(np.ascontiguousarray(read_tensor(demo.ALIGNER, names.ALIGNER_HEAD)))
    out.mkdir()
    cfg.save_pretrained(out)
    save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
    proc.save_pretrained(out)
    mark_aligner(out)
    return out


def test_official_aligner_gives_the_same_classes(demo_aligner_checkpoint, clips, tmp_path):
    """On a trained aligner (the demo's weights) the official Qwen3ForcedAligner (transformers, float32)
    and asrgguf's f32 decoder give the same class at every <timestamp> of N_ALIGN_OFFICIAL held-out clips,
    and the same words and times (the random-weight tests in test_align.py allow near-ties)."""
    import torch
    from qwen_asr.inference.qwen3_forced_aligner import Qwen3ForcedAligner

    from asrgguf.align import Aligner
    from asrgguf.convert import quantize_checkpoint

    off = Qwen3ForcedAligner.from_pretrained(str(demo_aligner_checkpoint), dtype=torch.float32, device_map="cpu")
    pair = quantize_checkpoint(demo_aligner_checkpoint, "f32", tmp_path, "f32", progress=False)
    rows = 0
    with Aligner.from_gguf(*pair, device="cpu", dtype="float32", threads=2) as al:
        for path, text in clips[:N_ALIGN_OFFICIAL]:
            wav = official_wav(str(path))
            units, ref = official_classes(off, wav, text, "English")
            ours = al.scores(wav, units)
            np.testing.assert_array_equal(ours.argmax(1), ref.argmax(1))
            words = [(w.text, w.start, w.end) for w in al.align(wav, text, "English")]
            assert words == official_words(off, wav, text, "English")
            rows += len(ref)
    assert rows >= 60
