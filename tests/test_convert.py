"""The quantizer: GGUF files llama.cpp loads, logits equal to the official thinker's, clean errors."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asrgguf.convert import quantize_checkpoint
from asrgguf.decoder import Decoder, DecoderOptions
from asrgguf.gguf_file import field, open_gguf, tensor_to_torch
from support.reference import official_model, official_text_logits

PROMPT = "<|im_start|>system\nYou transcribe meetings.<|im_end|>\n<|im_start|>user\nHello there, how are you today? 123<|im_end|>\n<|im_start|>assistant\nlanguage English<asr_text>"
LIMITS = {"f32": 1e-4, "f16": 1e-2, "q8_0": 5e-2}


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def decoder_logits(path, ids):
    dec = Decoder(path, DecoderOptions(n_ctx=256, n_threads=2))
    dec.eval_tokens(ids, 0, logits_all=True)
    out = np.stack([dec.logits(i).copy() for i in range(len(ids))])
    dec.close()
    return out


@pytest.mark.parametrize("outtype", ["f32", "f16", "q8_0"])
@pytest.mark.parametrize("ck", ["ck_gqa", "ck_mha", "ck_gqa_hf"])
def test_logits_match_official(request, gguf_pair, ck, outtype):
    ck_dir = request.getfixturevalue(ck)
    ref_dir = request.getfixturevalue("ck_gqa") if ck == "ck_gqa_hf" else ck_dir  # same weights
    model = official_model(str(ref_dir))
    ids = model.processor.tokenizer(PROMPT)["input_ids"]
    dec_path, _ = gguf_pair(ck_dir, outtype)
    dec = Decoder(dec_path, DecoderOptions(n_ctx=256))
    assert dec.tokenize(PROMPT) == ids  # llama.cpp's tokenizer from our GGUF = the official tokenizer
    dec.close()
    err = rel(decoder_logits(dec_path, ids), official_text_logits(model, ids))
    print(f"{ck} {outtype}: relative logit error {err:.2e}")
    assert err < LIMITS[outtype]


def test_hf_layout_gives_the_same_files(gguf_pair, ck_gqa, ck_gqa_hf):
    a, b = open_gguf(gguf_pair(ck_gqa, "q8_0")[0], "x"), open_gguf(gguf_pair(ck_gqa_hf, "q8_0")[0], "x")
    assert [t.name for t in a.tensors] == [t.name for t in b.tensors]
    for x, y in zip(a.tensors, b.tensors):
        assert np.array_equal(np.asarray(x.data), np.asarray(y.data)), x.name


def test_tied_head_writes_no_output_tensor(gguf_pair, ck_mha, ck_gqa):
    tied = {t.name for t in open_gguf(gguf_pair(ck_mha, "f16")[0], "x").tensors}
    untied = {t.name for t in open_gguf(gguf_pair(ck_gqa, "f16")[0], "x").tensors}
    assert "output.weight" not in tied and "output.weight" in untied


def test_mmproj_carries_encoder_settings(gguf_pair, ck_gqa):
    r = open_gguf(gguf_pair(ck_gqa, "q8_0")[1], "x")
    assert field(r, "general.architecture") == "clip"
    assert field(r, "clip.audio.projector_type") == "qwen3a"
    assert (field(r, "asrgguf.audio.n_window"), field(r, "asrgguf.audio.n_window_infer"),
            field(r, "asrgguf.audio.sample_rate"), field(r, "clip.audio.num_mel_bins")) == (50, 800, 16000, 128)


def test_k_quant_through_llama_cpp(ck_gqa, tmp_path):
    dec, _ = quantize_checkpoint(ck_gqa, "q4_k_m", tmp_path, "q8_0", progress=False)
    assert dec.name == "tiny-gqa-q4_k_m.gguf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mmproj-tiny-gqa-q8_0.gguf", "tiny-gqa-q4_k_m.gguf"]
    r = open_gguf(dec, "x")
    assert field(r, "general.file_type") == 15
    assert field(r, "general.architecture") == "qwen3vl"
    d = Decoder(dec, DecoderOptions(n_ctx=128))
    d.eval_tokens(d.tokenize(PROMPT), 0, logits_last=True)
    assert np.isfinite(d.logits(-1)).all()
    d.close()


# --- interchangeability with llama.cpp's own converter

def llama_cpp_src() -> Path:
    src = os.environ.get("ASRGGUF_LLAMA_CPP_SRC")
    if not src or not (Path(src) / "convert_hf_to_gguf.py").exists():
        pytest.fail("set ASRGGUF_LLAMA_CPP_SRC to llama.cpp's source (vendor/llama.cpp of the llama-cpp-python "
                    "sdist); .ci/run does this")
    return Path(src)


@pytest.fixture(scope="module")
def llama_cpp_pair(ck_gqa, tmp_path_factory):
    src = llama_cpp_src()
    out = tmp_path_factory.mktemp("llamacpp")
    env = dict(os.environ, PYTHONPATH=str(src / "gguf-py"))
    for extra, name in (([], "text-f32.gguf"), (["--mmproj"], "mmproj-f32.gguf")):
        subprocess.run([sys.executable, str(src / "convert_hf_to_gguf.py"), str(ck_gqa), "--outtype", "f32",
                        "--outfile", str(out / name)] + extra, check=True, env=env, capture_output=True)
    return out / "text-f32.gguf", out / "mmproj-f32.gguf"


def test_same_decoder_file_as_llama_cpp(llama_cpp_pair, gguf_pair, ck_gqa):
    theirs, ours = open_gguf(llama_cpp_pair[0], "x"), open_gguf(gguf_pair(ck_gqa, "f32")[0], "x")
    for key in ("general.architecture", "qwen3vl.block_count", "qwen3vl.embedding_length",
                "qwen3vl.attention.head_count_kv", "qwen3vl.rope.dimension_sections", "qwen3vl.rope.freq_base",
                "qwen3vl.n_deepstack_layers", "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
                "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.padding_token_id"):
        assert field(theirs, key) == field(ours, key), key
    t_theirs = {t.name: t for t in theirs.tensors}
    t_ours = {t.name: t for t in ours.tensors}
    assert t_theirs.keys() == t_ours.keys()
    for name, t in t_ours.items():
        assert np.array_equal(tensor_to_torch(t).numpy(), tensor_to_torch(t_theirs[name]).numpy()), name


def test_same_mmproj_as_llama_cpp(llama_cpp_pair, gguf_pair, ck_gqa):
    theirs, ours = open_gguf(llama_cpp_pair[1], "x"), open_gguf(gguf_pair(ck_gqa, "f32")[1], "x")
    for key in ("clip.audio.projector_type", "clip.audio.embedding_length", "clip.audio.block_count",
                "clip.audio.projection_dim", "clip.audio.num_mel_bins", "clip.audio.attention.head_count"):
        assert field(theirs, key) == field(ours, key), key
    t_theirs = {t.name: t for t in theirs.tensors}
    t_ours = {t.name: t for t in ours.tensors}
    assert t_theirs.keys() == t_ours.keys()
    for name, t in t_ours.items():  # llama.cpp stores the conv weights as f16 even at f32
        a, b = tensor_to_torch(t).numpy(), tensor_to_torch(t_theirs[name]).numpy()
        assert a.shape == b.shape and rel(b, a) < 1e-3, name


def test_asrgguf_reads_llama_cpp_files(llama_cpp_pair, gguf_pair, ck_gqa, clip5):
    from asrgguf import Transcriber

    ours = Transcriber.from_gguf(*gguf_pair(ck_gqa, "f32"), max_new_tokens=24).transcribe_all(str(clip5))
    mixed = Transcriber.from_gguf(llama_cpp_pair[0], gguf_pair(ck_gqa, "f32")[1], max_new_tokens=24)
    assert mixed.transcribe_all(str(clip5)).token_ids == ours.token_ids
    theirs = Transcriber.from_gguf(*llama_cpp_pair, max_new_tokens=24).transcribe_all(str(clip5))
    assert len(theirs.token_ids) > 0


# --- errors

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "asrgguf.cli", *map(str, args)], capture_output=True, text=True)


def test_not_a_checkpoint(tmp_path):
    r = run_cli("quantize", tmp_path)
    assert r.returncode == 1 and r.stderr == f"asrgguf: error: {tmp_path}: not a Qwen3-ASR checkpoint (config.json is missing)\n"
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    r = run_cli("quantize", tmp_path)
    assert r.stderr.startswith(f"asrgguf: error: {tmp_path}: not a Qwen3-ASR checkpoint (config.json model_type is 'llama'")


def test_missing_shard(ck_gqa_hf, tmp_path):
    bad = tmp_path / "ck"
    shutil.copytree(ck_gqa_hf, bad)
    shard = sorted(bad.glob("model-*.safetensors"))[1]
    shard.unlink()
    r = run_cli("quantize", bad, "-o", tmp_path / "out")
    assert r.returncode == 1
    assert r.stderr == f"asrgguf: error: {bad}: missing shard {shard.name} (listed in model.safetensors.index.json)\n"
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_wrong_shape(ck_gqa, tmp_path):
    bad = tmp_path / "ck"
    shutil.copytree(ck_gqa, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["thinker_config"]["text_config"]["intermediate_size"] = 96
    (bad / "config.json").write_text(json.dumps(cfg))
    r = run_cli("quantize", bad, "-o", tmp_path / "out")
    assert r.returncode == 1
    assert r.stderr == (f"asrgguf: error: {bad}: tensor 'thinker.model.layers.0.mlp.gate_proj.weight' has shape "
                        f"[128, 64], expected [96, 64] from config.json\n")


def test_unknown_outtype(ck_gqa):
    r = run_cli("quantize", ck_gqa, "--outtype", "q3_x")
    assert r.returncode == 1
    assert r.stderr == "asrgguf: error: unknown --outtype 'q3_x' (choose from f32, f16, bf16, q8_0, q4_k_m, q5_k_m, q6_k)\n"


def test_unwritable_outdir(ck_gqa, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run_cli("quantize", ck_gqa, "-o", blocker / "sub")
    assert r.returncode == 1
    assert r.stderr.startswith(f"asrgguf: error: {blocker / 'sub'}: cannot create output directory")


def test_interrupted_write_leaves_no_file(ck_gqa, tmp_path, monkeypatch):
    import asrgguf.convert as conv

    calls = {"n": 0}
    orig = conv._encode

    def boom(block, qtype):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return orig(block, qtype)

    monkeypatch.setattr(conv, "_encode", boom)
    with pytest.raises(KeyboardInterrupt):
        quantize_checkpoint(ck_gqa, "q8_0", tmp_path, "f16", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_quantized_files_get_the_usual_permissions(gguf_pair, ck_gqa):
    """Written through a temporary file (mkstemp makes 0600), the pair ends with open()'s permissions."""
    import stat

    umask = os.umask(0)
    os.umask(umask)
    for p in gguf_pair(ck_gqa, "q8_0"):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~umask, p
