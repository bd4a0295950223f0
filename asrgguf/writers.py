"""Writers for a `Transcription`: txt, json, srt, vtt.

Cues are the sentences of each piece, wrapped into lines of at most `max_line_chars` characters and
at most two lines a cue. A piece's start and end are exact (sample positions of the cuts). Without
word times (`timing: "interpolated"`) times inside a piece are interpolated by character count, so
they are only as fine as the piece is short; with word times from the aligner (`timing: "word"`)
a cue starts at its first word's start and ends at its last word's end.
"""
from __future__ import annotations

import json
import textwrap

from .options import DEFAULT_LINE_CHARS
from .results import Sentence
from .units import split_units

FORMATS = ("txt", "json", "srt", "vtt")
LINE_WIDTH = DEFAULT_LINE_CHARS   # characters per subtitle line
MAX_LINES = 2       # lines per cue; longer sentences become several cues over the same span


def _ts(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _word_cues(seg, groups_of_sents, out: list) -> None:
    """Cue times from the segment's words: each cue takes as many aligned units as its text has."""
    words, k = seg.words, 0
    for groups in groups_of_sents:
        for g in groups:
            n = len(split_units(" ".join(g), seg.language or ""))
            chunk = words[k:k + n]
            k += n
            prev = out[-1][1] if out else seg.start
            if chunk:
                a, b = max(chunk[0].start, prev), max(chunk[-1].end, chunk[0].start, prev)
            else:
                a = b = max(prev, seg.start)
            out.append((a, b, "\n".join(g)))


def cues(result, max_line_chars: int = LINE_WIDTH) -> list[tuple[float, float, str]]:
    """(start, end, text) for every subtitle cue, in order, with times monotonic."""
    out: list[tuple[float, float, str]] = []
    for seg in result.segments:
        sents = seg.sentences or ([Sentence(seg.start, seg.end, seg.text)] if seg.text else [])
        if getattr(result, "timing", "") == "word" and seg.words is not None:
            split = [textwrap.wrap(s.text, max_line_chars) or [s.text] for s in sents]
            _word_cues(seg, [[ln[i:i + MAX_LINES] for i in range(0, len(ln), MAX_LINES)] for ln in split], out)
            continue
        for s in sents:
            lines = textwrap.wrap(s.text, max_line_chars) or [s.text]
            groups = [lines[i:i + MAX_LINES] for i in range(0, len(lines), MAX_LINES)]
            a, b = float(s.start), float(s.end)
            n_chars = sum(len(" ".join(g)) for g in groups) or 1
            acc = 0
            for g in groups:
                text = "\n".join(g)
                ga = a + (b - a) * acc / n_chars
                acc += len(" ".join(g))
                gb = b if acc >= n_chars else a + (b - a) * acc / n_chars
                out.append((ga, gb, text))
    return out


def to_srt(result, max_line_chars: int = LINE_WIDTH) -> str:
    parts = []
    for i, (a, b, text) in enumerate(cues(result, max_line_chars), 1):
        parts.append(f"{i}\n{_ts(a, ',')} --> {_ts(b, ',')}\n{text}\n")
    return "\n".join(parts)


def to_vtt(result, max_line_chars: int = LINE_WIDTH) -> str:
    parts = ["WEBVTT\n"]
    for a, b, text in cues(result, max_line_chars):
        parts.append(f"{_ts(a, '.')} --> {_ts(b, '.')}\n{text}\n")
    return "\n".join(parts)


def to_txt(result) -> str:
    return result.text + "\n"


def to_json(result, indent: int | None = None) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False, indent=indent) + "\n"


def render(result, fmt: str, max_line_chars: int = LINE_WIDTH) -> str:
    """A Transcription as txt, json, srt or vtt text (srt/vtt lines of at most max_line_chars)."""
    if fmt == "txt":
        return to_txt(result)
    if fmt == "json":
        return to_json(result)
    if fmt == "srt":
        return to_srt(result, max_line_chars)
    if fmt == "vtt":
        return to_vtt(result, max_line_chars)
    raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
