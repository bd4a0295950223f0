"""asrgguf command line: `run`, `quantize`, `languages`."""
from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import click

from .errors import AsrggufError


def _fail(msg: str, code: int = 1):
    click.echo(f"asrgguf: error: {msg}", err=True)
    sys.exit(code)


def _write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as e:
        raise AsrggufError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AsrggufError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            _fail("interrupted", 130)


@click.group(cls=_Group)
@click.version_option(package_name="asrgguf")
def main():
    """Qwen3-ASR speech recognition: PyTorch audio encoder + llama.cpp GGUF decoder."""


@main.command()
@click.argument("audio", nargs=-1, required=True)
@click.option("--gguf", "gguf_path", type=click.Path(dir_okay=False), help="Decoder GGUF (qwen3vl).")
@click.option("--mmproj", type=click.Path(dir_okay=False),
              help="Audio encoder GGUF (qwen3a mmproj); default: the mmproj-*.gguf beside --gguf.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False),
              help="Hugging Face checkpoint directory: quantized once to a cache (q8_0), then reused.")
@click.option("--language", default="auto", show_default=True,
              help="Force the language: a name (English, any case) or an ISO code (en); auto detects.")
@click.option("--context", default="", help="Context text for the system prompt (names, terms).")
@click.option("--max-new-tokens", type=click.IntRange(1), default=512, show_default=True)
@click.option("--device", default="auto", show_default=True, help="Encoder device: auto|cpu|cuda|mps.")
@click.option("--dtype", default="auto", show_default=True,
              help="Encoder dtype: auto|float32|float16|bfloat16 (auto: float32 on CPU, float16 on GPU).")
@click.option("--n-gpu-layers", type=int, default=None,
              help="Decoder layers on the GPU (default: all when llama.cpp has a GPU backend).")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: all cores).")
@click.option("--out-text", type=click.Path(dir_okay=False), help="Also write the text to this file.")
@click.option("--format", "fmt", type=click.Choice(["txt", "json"]), default="txt", show_default=True)
@click.option("--bench-tokens", type=click.IntRange(1), default=None,
              help="Benchmarks only: generate exactly N tokens, ignoring end-of-turn (for random weights).")
def run(audio, gguf_path, mmproj, model_dir, language, context, max_new_tokens, device, dtype, n_gpu_layers,
        threads, out_text, fmt, bench_tokens):
    """Transcribe AUDIO files (wav, flac, mp3, ogg/opus, m4a, video ...)."""
    from .languages import normalize_language
    from .transcribe import Transcriber

    if bool(gguf_path) == bool(model_dir):
        raise AsrggufError("give either --gguf DECODER.gguf or --model HF_DIR")
    if mmproj and not gguf_path:
        raise AsrggufError("--mmproj goes with --gguf")
    normalize_language(language)  # fail before loading anything
    kw = dict(device=device, dtype=dtype, n_gpu_layers=n_gpu_layers, threads=threads,
              max_new_tokens=max_new_tokens)
    if gguf_path:
        tr = Transcriber.from_gguf(gguf_path, mmproj, **kw)
    else:
        tr = Transcriber.from_pretrained(model_dir, **kw)
    failed = 0
    texts = []
    for item in audio:
        try:
            r = tr.transcribe(item, language=language, context=context, bench_tokens=bench_tokens)
        except AsrggufError as e:
            click.echo(f"asrgguf: error: {e}", err=True)
            failed += 1
            continue
        texts.append(r.text)
        if fmt == "json":
            d = r.to_dict()
            d["audio"] = str(item)
            click.echo(json.dumps(d, ensure_ascii=False))
        else:
            click.echo(r.text)
    if out_text and texts:
        _write_atomic(Path(out_text), "\n".join(texts) + "\n")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("model_dir", type=click.Path())
@click.option("--outtype", default="q8_0", show_default=True,
              help="Decoder type: f32|f16|bf16|q8_0|q4_k_m|q5_k_m|q6_k.")
@click.option("--mmproj-type", default=None,
              help="Encoder (mmproj) type: f32|f16|q8_0 (default f16; f32 with --outtype f32).")
@click.option("-o", "--outdir", type=click.Path(file_okay=False), default=None,
              help="Output directory (default: MODEL_DIR).")
@click.option("--threads", type=click.IntRange(1), default=None, help="Threads for K-quants.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def quantize(model_dir, outtype, mmproj_type, outdir, threads, quiet):
    """Convert a Qwen3-ASR checkpoint into a decoder GGUF and an mmproj GGUF."""
    from .convert import quantize_checkpoint

    mm = mmproj_type or ("f32" if outtype.lower() == "f32" else "f16")
    dec, mmp = quantize_checkpoint(model_dir, outtype, outdir, mm, progress=None if not quiet else False,
                                   threads=threads)
    click.echo(str(dec))
    click.echo(str(mmp))


@main.command()
def languages():
    """List the supported languages and the codes --language accepts."""
    from .languages import LANGUAGES

    for name, codes in LANGUAGES.items():
        click.echo(f"{name}\t{', '.join(codes)}")


if __name__ == "__main__":
    main()
