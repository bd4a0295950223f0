"""Where a model's files are: the mmproj beside a decoder, the GGUF pair of a checkpoint (quantized once into
asrgguf's cache, again when the checkpoint changes), the demo's packaged pair, llama.cpp's GPU backends."""
from __future__ import annotations

import glob
import os
from pathlib import Path

from .cache_dir import default_cache_dir  # noqa: F401  (asrgguf.models.default_cache_dir, as before)
from .errors import AsrggufError


def find_mmproj(decoder_path: str | Path) -> Path:
    """The mmproj-*.gguf beside a decoder; the one naming the same model when there are several."""
    dec = Path(decoder_path)
    found = sorted(Path(p) for p in glob.glob(str(dec.parent / "mmproj-*.gguf")))
    if not found:
        raise AsrggufError(f"{dec}: no mmproj-*.gguf beside the decoder; pass --mmproj")
    if len(found) == 1:
        return found[0]
    stem = dec.name[:-len(".gguf")] if dec.name.endswith(".gguf") else dec.name
    base = stem.rsplit("-", 1)[0]
    same = [p for p in found if p.name.startswith(f"mmproj-{base}-")] or found
    for pref in ("f16", "f32", "bf16", "q8_0"):
        for p in same:
            if p.name.endswith(f"-{pref}.gguf"):
                return p
    return same[0]


_GPU_BACKENDS = ("cuda", "metal", "vulkan", "hip", "musa", "sycl", "opencl", "cann")


def llama_gpu_backends(lib_dir: str | Path | None = None) -> list[str]:
    """GPU backends of the installed llama.cpp build, read from its library names (nothing is loaded)."""
    if lib_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            return []
        lib_dir = Path(list(spec.submodule_search_locations)[0]) / "lib"
    names = [p.name.lower() for p in Path(lib_dir).glob("*ggml-*")]
    return [b for b in _GPU_BACKENDS if any(f"ggml-{b}" in n for n in names)]


def pretrained_pair(model: str | Path, outtype: str = "q8_0", cache_dir: str | Path | None = None
                    ) -> tuple[Path, Path]:
    """The GGUF pair `Transcriber.from_pretrained` loads: the demo's packaged pair, or a checkpoint
    (a directory, or a hub model name fetched into the hub's cache) quantized once into the cache
    (again when the checkpoint's files change)."""
    from . import demo, hub
    from .convert import output_paths, quantize_checkpoint

    if isinstance(model, str) and model == demo.NAME:  # packaged: nothing to quantize or cache
        if outtype != "q8_0":
            raise AsrggufError(f"the demo model ships as q8_0 only; for {outtype}: "
                               f"asrgguf quantize {demo.CHECKPOINT} --outtype {outtype}")
        return Path(demo.DECODER), Path(demo.MMPROJ)
    name = None
    if isinstance(model, str) and hub.is_model_name(model):
        name = model.split("/", 1)[1]
        model_dir = hub.snapshot(model)
        cache = Path(cache_dir) if cache_dir else default_cache_dir() / hub.cache_name(model)
    else:
        model_dir = Path(model)
        if not model_dir.is_dir():
            raise AsrggufError(f"{model_dir}: no such checkpoint directory (nor a model name such as "
                               f"Qwen/Qwen3-ASR-0.6B)")
        cache = Path(cache_dir) if cache_dir else default_cache_dir() / model_dir.resolve().name
    mm_type = "f32" if outtype == "f32" else "f16"
    dec, mm = output_paths(model_dir, outtype, cache, mm_type, name=name)
    stamp = cache / f".source-{outtype}"
    src_id = _checkpoint_stamp(model_dir)
    if not (dec.exists() and mm.exists() and stamp.exists() and stamp.read_text() == src_id):
        quantize_checkpoint(model_dir, outtype, cache, mmproj_type=mm_type, name=name)
        stamp.write_text(src_id)
    return dec, mm


def _checkpoint_stamp(model_dir: Path) -> str:
    parts = []
    for p in sorted(model_dir.glob("*")):
        if p.is_file() and (p.suffix in (".safetensors", ".json", ".txt")):
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{int(st.st_mtime)}")
    return "\n".join(parts)
