"""Quantizer: a Qwen3-ASR checkpoint -> a llama.cpp `qwen3vl` decoder GGUF + a `qwen3a` mmproj GGUF.

f32/f16/bf16/q8_0 are written directly with gguf-py, streaming the tensors in row blocks;
K-quants go through llama.cpp's own quantizer (`llama_model_quantize`) from an f16 intermediate.
Every file is written under a temporary name and renamed when complete.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import gguf_names as names
from .checkpoint import Checkpoint
from .errors import AsrggufError, check_signals
from .files import clean_stale, hold_for_test, temp_beside

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q4_k_m", "q5_k_m", "q6_k")
MMPROJ_TYPES = ("f32", "f16", "q8_0")
K_QUANTS = {"q4_k_m": 15, "q5_k_m": 17, "q6_k": 18}  # llama_ftype values
_FILE_TYPE = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}
BLOCK_ELEMS = 1 << 22  # elements per streamed block (16 MiB of float32)
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


@dataclass
class _Plan:
    gguf_name: str
    shape: tuple[int, ...]
    qtype: int                      # GGMLQuantizationType
    blocks: Callable[[], Iterator[np.ndarray]]


def _qtype_for(outtype: str, shape: tuple[int, ...]) -> int:
    import gguf

    Q = gguf.GGMLQuantizationType
    if len(shape) == 1 or outtype == "f32":
        return Q.F32
    if outtype == "f16":
        return Q.F16
    if outtype == "bf16":
        return Q.BF16
    if outtype == "q8_0":
        return Q.Q8_0 if shape[-1] % 32 == 0 else Q.F16
    raise ValueError(outtype)


def _nbytes(shape: tuple[int, ...], qtype: int) -> int:
    import gguf

    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return math.prod(shape) // block * size


def _encode(block: np.ndarray, qtype: int) -> bytes:
    import gguf

    Q = gguf.GGMLQuantizationType
    if qtype == Q.F32:
        return np.ascontiguousarray(block, dtype=np.float32).tobytes()
    if qtype == Q.F16:
        return np.ascontiguousarray(block, dtype=np.float16).tobytes()
    if qtype == Q.BF16:
        import torch

        t = torch.from_numpy(np.ascontiguousarray(block, dtype=np.float32)).to(torch.bfloat16)
        return t.view(torch.int16).numpy().tobytes()
    return gguf.quants.quantize(np.ascontiguousarray(block, dtype=np.float32), qtype).tobytes()


def _write_gguf(path: Path, writer_setup: Callable, plans: list[_Plan], progress) -> None:
    """Write header + KV + tensor infos, then stream each tensor's blocks; atomic rename at the end."""
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temp_beside(path)
    os.close(fd)
    try:
        w = writer_setup()
        for p in plans:
            w.add_tensor_info(p.gguf_name, p.shape, np.float32, _nbytes(p.shape, p.qtype), raw_dtype=p.qtype)
        w.write_header_to_file(Path(tmp))
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        hold_for_test("part")
        fout = w.fout[0]
        align = w.data_alignment
        for p in plans:
            fout.write(bytes(gguf.GGUFWriter.ggml_pad(fout.tell(), align) - fout.tell()))
            n = 0
            for block in p.blocks():
                check_signals()  # a deferred Ctrl-C / SIGTERM stops here, between blocks
                data = _encode(block, p.qtype)
                fout.write(data)
                n += len(data)
                progress(len(data))
            if n != _nbytes(p.shape, p.qtype):
                raise AsrggufError(f"internal error: {p.gguf_name} wrote {n} bytes")
            fout.write(bytes(gguf.GGUFWriter.ggml_pad(n, align) - n))
        fout.flush()
        os.fsync(fout.fileno())
        w.close()
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _row_blocks(ck: Checkpoint, kind: str, name: str, shape: tuple[int, ...], transform=None):
    rows = max(1, BLOCK_ELEMS // max(1, math.prod(shape[1:])))

    def gen():
        for b in ck.read_rows(kind, name, rows):
            yield transform(b) if transform else b
    return gen


def text_plans(ck: Checkpoint, outtype: str) -> list[_Plan]:
    plans = []
    for kind, name in ck.tensor_keys:
        if kind != "text":
            continue
        shape = ck.shape(kind, name)
        gname = names.ALIGNER_HEAD if ck.aligner and name == "lm_head.weight" else names.text_to_gguf(name)
        plans.append(_Plan(gname, shape, _qtype_for(outtype, shape), _row_blocks(ck, kind, name, shape)))
    return plans


def audio_plans(ck: Checkpoint, mmproj_type: str) -> list[_Plan]:
    import gguf

    Q = gguf.GGMLQuantizationType
    plans = []
    for kind, name in ck.tensor_keys:
        if kind != "audio":
            continue
        shape = ck.shape(kind, name)
        gname = names.audio_to_gguf(name)
        if name.startswith("conv2d") and name.endswith(".weight"):
            qtype = Q.F32 if mmproj_type == "f32" else Q.F16  # ggml's conv kernels want f16 or f32
            plans.append(_Plan(gname, shape, qtype, _row_blocks(ck, kind, name, shape)))
        elif name.startswith("conv2d") and name.endswith(".bias"):
            plans.append(_Plan(gname, shape + (1, 1), Q.F32,
                               _row_blocks(ck, kind, name, shape, lambda b: b.reshape(-1, 1, 1))))
        else:
            plans.append(_Plan(gname, shape, _qtype_for(mmproj_type, shape), _row_blocks(ck, kind, name, shape)))
    from .encoder import sinusoids

    a = ck.audio_config
    pos = sinusoids(a.get("max_source_positions", 1500), a["d_model"]).numpy()
    plans.append(_Plan(names.AUDIO_POSITION, pos.shape, Q.F32, lambda: iter([pos])))
    return plans


def _text_writer(ck: Checkpoint, ftype: int):
    import gguf

    t = ck.text_config
    tok = ck.tokenizer_files()

    def setup():
        w = gguf.GGUFWriter(path=None, arch=names.TEXT_ARCH)
        a = names.TEXT_ARCH
        w.add_type(gguf.GGUFType.MODEL)
        w.add_name(ck.name)
        nh = t["num_attention_heads"]
        hd = t.get("head_dim") or t["hidden_size"] // nh
        w.add_uint32(f"{a}.block_count", t["num_hidden_layers"])
        w.add_uint32(f"{a}.context_length", t.get("max_position_embeddings", 65536))
        w.add_uint32(f"{a}.embedding_length", t["hidden_size"])
        w.add_uint32(f"{a}.feed_forward_length", t["intermediate_size"])
        w.add_uint32(f"{a}.attention.head_count", nh)
        w.add_uint32(f"{a}.attention.head_count_kv", t.get("num_key_value_heads") or nh)
        sections = list((t.get("rope_scaling") or {}).get("mrope_section", [24, 20, 20]))
        w.add_array(f"{a}.rope.dimension_sections", (sections + [0, 0, 0, 0])[:4])
        w.add_float32(f"{a}.rope.freq_base", float(t.get("rope_theta", 1e6)))
        w.add_float32(f"{a}.attention.layer_norm_rms_epsilon", float(t.get("rms_norm_eps", 1e-6)))
        w.add_uint32(f"{a}.attention.key_length", hd)
        w.add_uint32(f"{a}.attention.value_length", hd)
        w.add_uint32(f"{a}.n_deepstack_layers", 0)
        if ck.aligner:  # the head as llama.cpp's classifier head: one label per class, its time in ms
            ms = ck.timestamp_segment_time
            w.add_array(f"{a}.classifier.output_labels", [f"{i * ms:g}ms" for i in range(ck.classify_num)])
            w.add_uint32(names.KEY_TIMESTAMP_TOKEN, ck.timestamp_token_id)
            w.add_float32(names.KEY_TIMESTAMP_MS, ms)
        w.add_file_type(ftype)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("qwen2")
        w.add_token_list(tok.tokens)
        w.add_token_types(tok.types)
        w.add_token_merges(tok.merges)
        w.add_eos_token_id(tok.eos_id)
        w.add_bos_token_id(tok.eos_id)
        if tok.pad_id is not None:
            w.add_pad_token_id(tok.pad_id)
        w.add_add_bos_token(False)
        w.add_add_eos_token(False)
        # plain ChatML, as llama.cpp's converter writes for this model: the checkpoint's own template
        # is audio-specific and only the prompt builder (asrgguf.prompt) needs that layout
        w.add_chat_template(CHATML)
        return w
    return setup


def _mmproj_writer(ck: Checkpoint, ftype: int):
    import gguf

    a = ck.audio_config
    pre = ck.preprocessor()

    def setup():
        w = gguf.GGUFWriter(path=None, arch="clip")
        w.add_type(gguf.GGUFType.MMPROJ)
        w.add_name(ck.name)
        w.add_file_type(ftype)
        w.add_bool("clip.has_audio_encoder", True)
        w.add_uint32("clip.audio.projection_dim", a["output_dim"])
        w.add_uint32("clip.audio.embedding_length", a["d_model"])
        w.add_uint32("clip.audio.feed_forward_length", a["encoder_ffn_dim"])
        w.add_uint32("clip.audio.block_count", a["encoder_layers"])
        w.add_uint32("clip.audio.attention.head_count", a["encoder_attention_heads"])
        w.add_uint32("clip.audio.num_mel_bins", a["num_mel_bins"])
        w.add_float32("clip.audio.attention.layer_norm_epsilon", 1e-5)
        w.add_string("clip.audio.projector_type", names.MMPROJ_PROJECTOR)
        w.add_uint32(names.KEY_N_WINDOW, a.get("n_window", 50))
        w.add_uint32(names.KEY_N_WINDOW_INFER, a.get("n_window_infer", 800))
        w.add_uint32(names.KEY_SAMPLE_RATE, pre.get("sampling_rate", 16000))
        w.add_uint32(names.KEY_HOP_LENGTH, pre.get("hop_length", 160))
        w.add_uint32(names.KEY_N_FFT, pre.get("n_fft", 400))
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        return w
    return setup


def output_paths(model_dir: str | Path, outtype: str, outdir: str | Path | None = None,
                 mmproj_type: str = "f16", name: str | None = None) -> tuple[Path, Path]:
    """(decoder, mmproj) paths for a checkpoint: NAME-OUTTYPE.gguf and mmproj-NAME-MMPROJ_TYPE.gguf in outdir
    (default: the checkpoint directory); NAME is the directory's name unless given."""
    name = name or Path(model_dir).resolve().name
    out = Path(outdir) if outdir else Path(model_dir)
    return out / f"{name}-{outtype}.gguf", out / f"mmproj-{name}-{mmproj_type}.gguf"


def _check_outdir(out: Path):
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AsrggufError(f"{out}: cannot create output directory ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise AsrggufError(f"{out}: output directory is not writable")


def _progress_bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=not enabled, file=sys.stderr,
               leave=False)
    return bar


def quantize_checkpoint(model_dir: str | Path, outtype: str = "q8_0", outdir: str | Path | None = None,
                        mmproj_type: str = "f16", progress: bool = False,
                        threads: int | None = None, decoder: bool = True, mmproj: bool = True,
                        name: str | None = None) -> tuple[Path, Path]:
    """Convert a checkpoint directory; returns (decoder path, mmproj path).

    outtype: the decoder's type (OUTTYPES); mmproj_type: the encoder's (MMPROJ_TYPES); outdir: where
    (default: the checkpoint directory); name: the files' model name (default: the directory's name).
    Every file is written under a temporary name and renamed when complete; temporary files a killed
    run left are removed first."""
    outtype, mmproj_type = outtype.lower(), mmproj_type.lower()
    if outtype not in OUTTYPES:
        raise AsrggufError(f"unknown --outtype {outtype!r} (choose from {', '.join(OUTTYPES)})")
    if mmproj_type not in MMPROJ_TYPES:
        raise AsrggufError(f"unknown mmproj type {mmproj_type!r} (choose from {', '.join(MMPROJ_TYPES)})")
    ck = Checkpoint(model_dir)
    dec_path, mm_path = output_paths(model_dir, outtype, outdir, mmproj_type, name=name)
    _check_outdir(dec_path.parent)
    f16_part = dec_path.with_name(f".{dec_path.name}.f16.part.gguf")
    # what a killed run (SIGKILL, power loss) left: its temporary files (SIGINT/SIGTERM remove their own)
    for target in (mm_path, dec_path, f16_part):
        clean_stale(target)
    with contextlib.suppress(OSError):
        f16_part.unlink()
    if mmproj:
        plans = audio_plans(ck, mmproj_type)
        with _progress_bar(sum(_nbytes(p.shape, p.qtype) for p in plans), mm_path.name, progress) as bar:
            _write_gguf(mm_path, _mmproj_writer(ck, _FILE_TYPE[mmproj_type]), plans, bar.update)
    if decoder:
        direct = "f16" if outtype in K_QUANTS else outtype
        plans = text_plans(ck, direct)
        target = dec_path if outtype not in K_QUANTS else f16_part
        try:
            with _progress_bar(sum(_nbytes(p.shape, p.qtype) for p in plans), target.name, progress) as bar:
                _write_gguf(target, _text_writer(ck, _FILE_TYPE[direct]), plans, bar.update)
            if outtype in K_QUANTS:
                llama_quantize(target, dec_path, K_QUANTS[outtype], threads)
        finally:
            if outtype in K_QUANTS:
                with contextlib.suppress(OSError):
                    target.unlink()
    return dec_path, mm_path


def llama_quantize(src: Path, dst: Path, ftype: int, threads: int | None = None) -> None:
    """K-quants through llama.cpp's quantizer; written to a temporary name, renamed when done."""
    from .llama_bindings import bindings

    L = bindings()

    from .decoder import quiet_llama_logs

    quiet_llama_logs()
    L.llama_backend_init()
    params = L.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads or os.cpu_count() or 1
    fd, tmp = temp_beside(dst)
    os.close(fd)
    try:
        rc = L.llama_model_quantize(str(src).encode(), tmp.encode(), params)
        check_signals()
        if rc != 0:
            raise AsrggufError(f"llama.cpp's quantizer failed on {src.name} (code {rc})")
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
