"""`asrgguf listen`: live transcription of the microphone, a file or standard input (presentation of
`Transcriber.stream()`'s events: partials rewritten in place on a terminal, finals as lines, or jsonl)."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_options import engine_options as _engine_options
from .errors import AsrggufError


@click.command()
@click.argument("source", default="mic")
@click.option("--gguf", "gguf_path", type=click.Path(dir_okay=False), help="Decoder GGUF (qwen3vl).")
@click.option("--mmproj", type=click.Path(dir_okay=False), help="Audio encoder GGUF (default: beside --gguf).")
@click.option("--model", "model_dir", help="Checkpoint directory, ORG/NAME, or demo.")
@click.option("--language", default="auto", show_default=True, help="Force the language (a name or ISO code).")
@click.option("--context", default="", help="Context text for the system prompt.")
@click.option("--raw-rate", type=int, default=None,
              help="SOURCE is raw signed 16-bit mono PCM at this rate (e.g. '-' from arecord or ffmpeg -f s16le).")
@click.option("--realtime", is_flag=True, help="Pace a file as if it were live (a block every 100 ms).")
@click.option("--step-seconds", type=click.FloatRange(0.1, 30), default=1.0, show_default=True,
              help="Speech between partial results.")
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text", show_default=True,
              help="text: partials rewritten in place on a terminal, finals as lines; jsonl: every event.")
@click.option("--output", type=click.Path(dir_okay=False), help="Also write the finals as .srt, .vtt, .txt or .json.")
@_engine_options
def listen(source, gguf_path, mmproj, model_dir, language, context, raw_rate, realtime, step_seconds, fmt, output,
           device, dtype, n_gpu_layers, threads, no_native):
    """Live transcription of SOURCE: mic (the default microphone; pip install 'asrgguf[mic]'), an audio file, or
    - (standard input: any format, or raw PCM with --raw-rate). Utterances end at pauses (Silero VAD)."""
    import json
    import time

    from . import audio as audio_mod
    from . import writers
    from .languages import normalize_language
    from .loading import EngineConfig
    from .results import Transcription, TranscriptionInfo
    from .vad import model_path

    cfg = EngineConfig(gguf=gguf_path, mmproj=mmproj, model=model_dir, device=device, dtype=dtype,
                       n_gpu_layers=n_gpu_layers, threads=threads, native=False if no_native else None).check()
    lang = normalize_language(language)
    out_fmt = None
    if output:
        out_fmt = Path(output).suffix.lower().lstrip(".")
        kinds = [f for f in writers.FORMATS if f != "rttm"]   # rttm is speaker turns: a live stream has none
        if out_fmt not in kinds:
            raise AsrggufError(f"--output {output}: unknown format (.{', .'.join(kinds)})")
        from . import batch

        batch.check_writable(Path(output))
    model_path()   # the vad extra: one line before anything loads
    blocks = _listen_blocks(source, raw_rate)
    tty = sys.stdout.isatty()
    finals = []
    with cfg.load() as tr:
        stream = tr.stream(lang, context, step_seconds=step_seconds)
        t0 = time.monotonic()
        fed = 0

        def show(events):
            for e in events:
                if fmt == "jsonl":
                    d = {"type": e.type, "utterance": e.utterance, "text": e.text, "start": round(e.start, 3)}
                    if e.end is not None:
                        d["end"] = round(e.end, 3)
                    click.echo(json.dumps(d, ensure_ascii=False))
                elif e.type.startswith("speech_"):
                    pass
                elif e.type == "partial":
                    if tty:
                        click.echo(f"\r\x1b[K{e.text}", nl=False)
                elif e.text:
                    click.echo(("\r\x1b[K" if tty else "") + f"[{e.start:7.2f} -> {e.end:7.2f}] {e.text}")
                if e.type == "final":
                    finals.append(e.segment)

        try:
            for b in blocks:
                show(stream.feed(b))
                fed += b.size
                if realtime:
                    ahead = fed / audio_mod.SAMPLE_RATE - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
        except KeyboardInterrupt:
            pass
        show(stream.finish())
        if tty and fmt == "text":
            click.echo("\r\x1b[K", nl=False)
    if output:
        info = TranscriptionInfo(str(source), lang, fed / audio_mod.SAMPLE_RATE)
        res = Transcription.collect(finals, info)
        from . import batch

        batch.write_atomic(Path(output), writers.render(res, out_fmt))


def _listen_blocks(source: str, raw_rate: int | None):
    """16 kHz float32 blocks of `listen`'s SOURCE, as they arrive."""
    from . import audio as audio_mod

    if source == "mic":
        try:
            import sounddevice as sd
        except (ImportError, OSError) as e:
            raise AsrggufError(f"the microphone needs sounddevice and PortAudio: pip install 'asrgguf[mic]' ({e})") \
                from None
        import queue

        q: queue.Queue = queue.Queue()

        def mic():
            with sd.InputStream(samplerate=audio_mod.SAMPLE_RATE, channels=1, dtype="float32", blocksize=1600,
                                callback=lambda data, frames, t, status: q.put(data[:, 0].copy())):
                while True:
                    yield q.get()
        return mic()
    if raw_rate:
        f = sys.stdin.buffer if source == "-" else open(source, "rb")
        return audio_mod.raw_pcm_blocks(f, raw_rate)
    src = sys.stdin.buffer.read() if source == "-" else source
    if source == "-" and not src:
        raise AsrggufError("-: standard input is empty")
    info = audio_mod.probe(src)
    return audio_mod.stream_16k(src, info, block_frames=None if source == "-" else 1600 * 3)
