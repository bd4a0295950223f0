"""Writers for a `Transcription`: txt, json, srt, vtt.

Cues are the sentences of each piece. A piece's start and end are exact (sample positions of the
cuts); sentence times inside a piece are interpolated by character count, so they are only as
fine as the piece is short (the model gives no word times).
"""
from __future__ import annotations

import json
import textwrap

FORMATS = ("txt", "json", "srt", "vtt")
LINE_WIDTH = 42     # characters per subtitle line (a common broadcast guideline)
MAX_LINES = 2       # lines per cue; longer sentences become several cues over the same span


def _ts(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def cues(result) -> list[tuple[float, float, str]]:
    """(start, end, text) for every subtitle cue, in order, with times monotonic."""
    out: list[tuple[float, float, str]] = []
    for seg in result.segments:
        sents = seg.sentences or ([{"start": seg.start, "end": seg.end, "text": seg.text}] if seg.text else [])
        for s in sents:
            lines = textwrap.wrap(s["text"], LINE_WIDTH) or [s["text"]]
            groups = [lines[i:i + MAX_LINES] for i in range(0, len(lines), MAX_LINES)]
            a, b = float(s["start"]), float(s["end"])
            n_chars = sum(len(" ".join(g)) for g in groups) or 1
            acc = 0
            for g in groups:
                text = "\n".join(g)
                ga = a + (b - a) * acc / n_chars
                acc += len(" ".join(g))
                gb = b if acc >= n_chars else a + (b - a) * acc / n_chars
                out.append((ga, gb, text))
    return out


def to_srt(result) -> str:
    parts = []
    for i, (a, b, text) in enumerate(cues(result), 1):
        parts.append(f"{i}\n{_ts(a, ',')} --> {_ts(b, ',')}\n{text}\n")
    return "\n".join(parts)


def to_vtt(result) -> str:
    parts = ["WEBVTT\n"]
    for a, b, text in cues(result):
        parts.append(f"{_ts(a, '.')} --> {_ts(b, '.')}\n{text}\n")
    return "\n".join(parts)


def to_txt(result) -> str:
    return result.text + "\n"


def to_json(result, indent: int | None = None) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False, indent=indent) + "\n"


def render(result, fmt: str) -> str:
    """A Transcription as txt, json, srt or vtt text."""
    if fmt == "txt":
        return to_txt(result)
    if fmt == "json":
        return to_json(result)
    if fmt == "srt":
        return to_srt(result)
    if fmt == "vtt":
        return to_vtt(result)
    raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
