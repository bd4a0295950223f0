"""Many inputs: expand files, directories and globs; one output per input, written atomically;
skip finished ones; keep going past bad files; a progress bar and a summary."""
from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import writers
from .audio import probe
from .errors import AsrggufError
from .files import clean_stale, write_atomic
from .results import Transcription

AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".m4a", ".m4b", ".aac", ".wma", ".aif",
                    ".aiff", ".caf", ".w64", ".mka", ".mp4", ".m4v", ".mkv", ".webm", ".mov", ".avi", ".amr",
                    ".ac3", ".spx", ".au", ".snd"}
_GLOB_CHARS = set("*?[")


@dataclass
class Item:
    source: str                 # as given, or as found under a directory / by a glob
    rel: Path | None = None     # output path relative to --output-dir (without extension)
    error: str | None = None    # set when the argument itself is unusable


def expand_inputs(args: list[str]) -> list[Item]:
    """Files as given; directories: their audio files, recursively, sorted; globs: their matches, sorted.

    Outputs mirror the layout below a directory argument; files and glob matches are named by
    their stem. Order is deterministic, so a restarted batch maps inputs to the same outputs.
    """
    items: list[Item] = []
    seen: set[str] = set()

    def add(item: Item) -> None:  # the same file named twice (a file and a glob, say) runs once
        key = os.path.realpath(item.source) if item.error is None else f"\0{item.source}"
        if key not in seen:
            seen.add(key)
            items.append(item)

    for a in args:
        p = Path(a)
        if not a:  # Path("") is the current directory: never read a whole directory by accident
            add(Item(a, error="'': empty audio path"))
            continue
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.is_file() and q.suffix.lower() in AUDIO_EXTENSIONS
                           and not q.name.startswith("."))
            if not found:
                add(Item(a, error=f"{a}: no audio files in directory"))
            for q in found:
                add(Item(str(q), q.relative_to(p).with_suffix("")))
        elif not p.exists() and _GLOB_CHARS & set(a):
            found = sorted(q for q in glob.glob(os.path.expanduser(a), recursive=True) if Path(q).is_file())
            if not found:
                add(Item(a, error=f"{a}: no files match"))
            for q in found:
                add(Item(q, Path(Path(q).stem)))
        else:
            add(Item(a, Path(p.stem or p.name)))
    return items


def assign_outputs(items: list[Item], out_dir: Path, ext: str) -> dict[int, Path]:
    """index -> output path; an input whose output collides with an earlier one gets an error instead."""
    taken: dict[Path, str] = {}
    outs: dict[int, Path] = {}
    for i, it in enumerate(items):
        if it.error or it.rel is None:
            continue
        out = out_dir / it.rel.parent / f"{it.rel.name}.{ext}"
        if out in taken:
            it.error = f"{it.source}: output {out} would overwrite the output of {taken[out]}; run it separately"
            continue
        taken[out] = it.source
        outs[i] = out
    return outs


def check_output_dir(path: Path) -> None:
    """--output-dir must be (or become) a writable directory: checked before any model loads."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise AsrggufError(f"{path}: output directory is a file") from None
    except OSError as e:
        raise AsrggufError(f"{path}: cannot create output directory ({e.strerror})") from None
    if not path.is_dir():
        raise AsrggufError(f"{path}: output directory is a file")
    if not os.access(path, os.W_OK | os.X_OK):
        raise AsrggufError(f"{path}: output directory is not writable")


def check_writable(path: Path) -> None:
    """An output file's directory must exist and be writable, and the file itself no directory."""
    if path.is_dir():
        raise AsrggufError(f"{path}: is a directory, not a file")
    parent = path.parent
    if not parent.is_dir():
        raise AsrggufError(f"{path}: no such directory {str(parent)!r}")
    if not os.access(parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise AsrggufError(f"{path}: cannot write (permission denied)")


@dataclass
class Plan:
    """What a batch will do, decided before any model loads: the inputs, their outputs, which to
    transcribe (probed fine) and their header durations."""
    items: list[Item]
    outs: dict[int, Path]
    todo: list[int]
    infos: dict[int, object]

    @property
    def total_seconds(self) -> float:
        return sum((getattr(info, "duration", None) or 0.0) for info in self.infos.values())


def plan(args: list[str], out_dir: Path | None, fmt: str, overwrite: bool, summary: "Summary", report,
         exists=None, clean: bool = True) -> Plan:
    """The batch rules shared by the local run and the cluster job: expand the inputs, name their
    outputs, skip inputs whose output exists (unless overwrite; stale temp files of a killed run
    removed), then report unusable inputs in input order and probe the rest, counting both in
    `summary`. `exists(out)` checks an output (default: the local file exists)."""
    exists = exists or (lambda p: p.exists())
    items = expand_inputs(list(args))
    outs = assign_outputs(items, out_dir, fmt) if out_dir is not None else {}
    todo: list[int] = []
    for i, it in enumerate(items):
        if it.error:
            continue
        if out_dir is not None and i in outs and not overwrite and exists(outs[i]):
            if clean:
                clean_stale(outs[i])
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
    return Plan(items, outs, [i for i in todo if i in infos], infos)


def transcribe_one(tr, source, fmt: str, opts: dict, out=None, on_segment=None, write=None,
                   max_line_chars: int | None = None):
    """One input of a batch: transcribe, render, and write the output (atomically) when `out` is given.
    Returns (transcription, rendered text)."""
    segments, info = tr.transcribe(source, **opts)
    segs = []
    for seg in segments:
        segs.append(seg)
        if on_segment is not None:
            on_segment(seg)
    res = Transcription.collect(segs, info)
    doc = render(res, fmt, max_line_chars)
    if out is not None:
        (write or write_output)(out, doc)
    return res, doc


def failure_message(source, e: BaseException) -> str:
    """The one line a batch reports for an input that failed (and goes on)."""
    if isinstance(e, AsrggufError):
        return str(e)
    return f"{source}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'failed'}"


def render(result, fmt: str, max_line_chars: int | None = None) -> str:
    return writers.render(result, fmt, max_line_chars or writers.LINE_WIDTH)


def write_output(path: Path, text: str) -> None:
    """One input's output: stale temp files of a killed run removed, then written atomically."""
    clean_stale(path)
    write_atomic(path, text)


@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    t0: float = field(default_factory=time.perf_counter)

    def line(self) -> str:
        wall = time.perf_counter() - self.t0
        rtf = wall / self.audio_seconds if self.audio_seconds else 0.0
        return (f"asrgguf: {self.done} done, {self.skipped} skipped, {self.failed} failed; "
                f"{self.audio_seconds / 3600:.3f} h of audio in {wall:.1f} s wall (real-time factor {rtf:.3f})")
