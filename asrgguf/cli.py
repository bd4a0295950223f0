"""asrgguf command line: `run`, `quantize`, `languages`."""
from __future__ import annotations

import gc
import os
import sys
from pathlib import Path

import click

from .errors import AsrggufError


def _fail(msg: str, code: int = 1):
    click.echo(f"asrgguf: error: {msg}", err=True)
    sys.exit(code)


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


_TIMES_HELP = ("Times: a piece's start and end are exact (the sample where the audio was cut); sentences "
               "inside a piece get times interpolated by character count, so they are as fine as the piece is "
               "short (--piece-seconds; the model gives no word times).")


@main.command(epilog=_TIMES_HELP)
@click.argument("audio", nargs=-1, required=True)
@click.option("--gguf", "gguf_path", type=click.Path(dir_okay=False), help="Decoder GGUF (qwen3vl).")
@click.option("--mmproj", type=click.Path(dir_okay=False),
              help="Audio encoder GGUF (qwen3a mmproj); default: the mmproj-*.gguf beside --gguf.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False),
              help="Hugging Face checkpoint directory: quantized once to a cache (q8_0), then reused; "
                   "'demo': the built-in demo model (small, English, trained on espeak-ng speech; "
                   "a directory named demo: ./demo).")
@click.option("--language", default="auto", show_default=True,
              help="Force the language: a name (English, any case) or an ISO code (en); auto detects.")
@click.option("--context", default="", help="Context text for the system prompt (names, terms).")
@click.option("--max-new-tokens", type=click.IntRange(1), default=512, show_default=True,
              help="Token limit per piece.")
@click.option("--device", default="auto", show_default=True, help="Encoder device: auto|cpu|cuda|mps.")
@click.option("--dtype", default="auto", show_default=True,
              help="Encoder dtype: auto|float32|float16|bfloat16 (auto: float32 on CPU, float16 on GPU).")
@click.option("--n-gpu-layers", type=int, default=None,
              help="Decoder layers on the GPU (default: all when llama.cpp has a GPU backend).")
@click.option("--threads", type=click.IntRange(1), default=None, help="CPU threads (default: all cores).")
@click.option("--out-text", type=click.Path(dir_okay=False), help="Also write the text to this file.")
@click.option("--format", "fmt", type=click.Choice(["txt", "json", "srt", "vtt"]), default="txt",
              show_default=True, help="Output format; json holds segments, languages and timings.")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="Write one OUTPUT-DIR/NAME.FORMAT per input (atomically) instead of printing; inputs whose "
                   "output exists are skipped (see --overwrite); a summary goes to stderr.")
@click.option("--overwrite", is_flag=True, help="With --output-dir: transcribe inputs whose output exists.")
@click.option("--piece-seconds", type=click.FloatRange(10, 1200), default=30.0, show_default=True,
              help="Long audio is cut at the quietest point within 5 s of every PIECE-SECONDS (as the official "
                   "package does with 1200) and each piece is transcribed on its own.")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Decode this many pieces of a long recording at once, as parallel sequences in one "
                   "llama.cpp context (more throughput, more KV-cache memory).")
@click.option("--no-repetition-guard", is_flag=True,
              help="Let looping generations run to --max-new-tokens and keep repeated text as generated.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("--progress", is_flag=True, help="Progress bar even when stderr is not a terminal.")
@click.option("--bench-tokens", type=click.IntRange(1), default=None,
              help="Benchmarks only: generate exactly N tokens, ignoring end-of-turn (for random weights).")
@click.option("--no-native", is_flag=True,
              help="llama.cpp's own q8_0 products instead of asrgguf's native backend (also ASRGGUF_NO_NATIVE=1).")
def run(audio, gguf_path, mmproj, model_dir, language, context, max_new_tokens, device, dtype, n_gpu_layers,
        threads, out_text, fmt, output_dir, overwrite, piece_seconds, parallel, no_repetition_guard, quiet,
        progress, bench_tokens, no_native):
    """Transcribe AUDIO files, directories or quoted globs (wav, flac, mp3, ogg/opus, m4a, video ...)."""
    if no_native:
        os.environ["ASRGGUF_NO_NATIVE"] = "1"   # read by asrgguf.native when the decoder loads
    from . import batch
    from .languages import normalize_language
    from .decoder import Decoder
    from .longform import SAMPLE_RATE, probe, transcribe_long
    from .subtitles import render
    from .transcribe import Transcriber

    if bool(gguf_path) == bool(model_dir):
        raise AsrggufError("give either --gguf DECODER.gguf or --model HF_DIR")
    if mmproj and not gguf_path:
        raise AsrggufError("--mmproj goes with --gguf")
    normalize_language(language)  # fail before loading anything
    summary = batch.Summary()
    prog = batch.Progress(False)

    def report(msg: str) -> None:
        prog.write(f"asrgguf: error: {msg}")

    if gguf_path:
        Decoder.check_file(gguf_path)  # header errors (missing, not a GGUF, wrong architecture) first
    items = batch.expand_inputs(list(audio))
    outs = batch.assign_outputs(items, Path(output_dir), fmt) if output_dir else {}
    todo: list[int] = []
    for i, it in enumerate(items):
        if it.error:
            continue
        if output_dir and i in outs and outs[i].exists() and not overwrite:
            batch.clean_stale(outs[i])
            summary.skipped += 1
            continue
        todo.append(i)
    infos: dict[int, object] = {}
    for i, it in enumerate(items):  # report unusable inputs in input order, before any model is loaded
        if it.error:
            report(it.error)
            summary.failed += 1
        elif i in todo:
            try:
                infos[i] = probe(it.source)
            except AsrggufError as e:
                report(str(e))
                summary.failed += 1
    tr = None
    if infos:  # only when there is something to transcribe
        kw = dict(device=device, dtype=dtype, n_gpu_layers=n_gpu_layers, threads=threads,
                  max_new_tokens=max_new_tokens)
        tr = Transcriber.from_gguf(gguf_path, mmproj, **kw) if gguf_path else \
            Transcriber.from_pretrained(model_dir, **kw)
    total = sum((getattr(info, "duration", None) or 0.0) for info in infos.values())
    prog = batch.Progress(batch.progress_wanted(quiet, progress or None), total or None)
    texts = []
    try:
        for i in todo:
            if i not in infos:
                continue
            it = items[i]
            prog.set_desc(Path(it.source).name)
            try:
                res = transcribe_long(tr, it.source, language=language, context=context,
                                      max_new_tokens=max_new_tokens, piece_seconds=piece_seconds,
                                      repetition_guard=not no_repetition_guard, bench_tokens=bench_tokens,
                                      info=infos[i], parallel=parallel,
                                      on_piece=lambda p, s: prog.update(p.length / SAMPLE_RATE))
                doc = render(res, fmt)
                if output_dir:
                    batch.clean_stale(outs[i])
                    batch.write_atomic(outs[i], doc)
            except AsrggufError as e:
                report(str(e))
                summary.failed += 1
                continue
            except Exception as e:  # one bad input must not stop the batch
                report(f"{it.source}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'failed'}")
                summary.failed += 1
                continue
            summary.done += 1
            summary.audio_seconds += res.duration
            texts.append(res.text)
            if not output_dir:
                if fmt == "txt":
                    click.echo(res.text)
                else:
                    click.echo(doc, nl=False)
    finally:
        prog.close()
    if out_text and texts:
        batch.write_atomic(Path(out_text), "\n".join(texts) + "\n")
    if output_dir and not quiet:
        click.echo(summary.line(), err=True)
    if summary.failed:
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


def cli_main() -> None:
    """The `asrgguf` command: click's main, and no final garbage collection when the process ends.

    The interpreter's last collection walks every object torch made: about 0.2 s of each run's exit
    on 2 cores (docs/benchmarks.md). Frozen objects are skipped; the OS frees the memory anyway."""
    try:
        main()
    finally:
        gc.freeze()


if __name__ == "__main__":
    cli_main()
