"""Writers for a `Transcription`: txt, json, srt, vtt, rttm.

Cues are the sentences of each piece, wrapped into lines of at most `max_line_chars` characters and
at most two lines a cue. A piece's start and end are exact (sample positions of the cuts). Without
word times (`timing: "interpolated"`) times inside a piece are interpolated by character count, so
they are only as fine as the piece is short; with word times from the aligner (`timing: "word"`)
a cue starts at its first word's start and ends at its last word's end.

With speaker labels (diarization) a cue never spans two speakers: a sentence is split where its words'
speakers change (with word times; else each sentence has one speaker), and each cue is prefixed with its
speaker (`[SPEAKER_00] ` in srt, a voice span `<v SPEAKER_00>` in vtt). rttm gives the diarization's
turns as standard RTTM lines (`SPEAKER file 1 start duration <NA> <NA> speaker <NA> <NA>`).
"""
from __future__ import annotations

import json
import re
import textwrap
from pathlib import PurePath

from .errors import AsrggufError
from .options import DEFAULT_LINE_CHARS
from .results import Sentence
from .units import split_units

FORMATS = ("txt", "json", "srt", "vtt", "rttm")
LINE_WIDTH = DEFAULT_LINE_CHARS   # characters per subtitle line
MAX_LINES = 2       # lines per cue; longer sentences become several cues over the same span


def _ts(seconds: float, sep: str) -> str:
    ms = int(round(max(0.0, seconds) * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _word_cues(seg, runs, out: list) -> None:
    """Cue times from the segment's words: each cue takes as many aligned units as its text has.
    runs: (groups of lines, speaker) for each run of a sentence."""
    words, k = seg.words, 0
    for groups, who in runs:
        for g in groups:
            n = len(split_units(" ".join(g), seg.language or ""))
            chunk = words[k:k + n]
            k += n
            prev = out[-1][1] if out else seg.start
            if chunk:
                a, b = max(chunk[0].start, prev), max(chunk[-1].end, chunk[0].start, prev)
            else:
                a = b = max(prev, seg.start)
            out.append((a, b, "\n".join(g), who))


def _speaker_runs(seg, sents) -> list[tuple[str, str | None]]:
    """(text, speaker) runs of a segment's sentences, split where the speaker of the words changes (a
    sentence whose words are not one unit per space-separated token keeps its own speaker)."""
    runs: list[tuple[str, str | None]] = []
    words, k = seg.words or [], 0
    for s in sents:
        n = len(split_units(s.text, seg.language or ""))
        ws, k = words[k:k + n], k + n
        tokens = s.text.split()
        if not (len(ws) == n == len(tokens) and len({w.speaker for w in ws}) > 1):
            runs.append((s.text, _majority(ws) if ws else s.speaker))
            continue
        start = 0
        for i in range(1, n + 1):
            if i == n or ws[i].speaker != ws[start].speaker:
                runs.append((" ".join(tokens[start:i]), ws[start].speaker))
                start = i
    return runs


def _majority(words) -> str | None:
    time: dict = {}
    for w in words:
        time[w.speaker] = time.get(w.speaker, 0.0) + max(w.end - w.start, 1e-3)
    return max(time, key=time.get) if time else None


def speaker_cues(result, max_line_chars: int = LINE_WIDTH) -> list[tuple[float, float, str, str | None]]:
    """(start, end, text, speaker) for every subtitle cue, in order, with times monotonic; speaker is None
    without diarization."""
    out: list[tuple[float, float, str, str | None]] = []
    for seg in result.segments:
        sents = seg.sentences or ([Sentence(seg.start, seg.end, seg.text, seg.speaker)] if seg.text else [])
        if getattr(result, "timing", "") == "word" and seg.words is not None:
            runs = []
            for text, who in _speaker_runs(seg, sents):
                ln = textwrap.wrap(text, max_line_chars) or [text]
                runs.append(([ln[i:i + MAX_LINES] for i in range(0, len(ln), MAX_LINES)], who))
            _word_cues(seg, runs, out)
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
                out.append((ga, gb, text, s.speaker))
    return out


def cues(result, max_line_chars: int = LINE_WIDTH) -> list[tuple[float, float, str]]:
    """(start, end, text) for every subtitle cue, in order, with times monotonic."""
    return [c[:3] for c in speaker_cues(result, max_line_chars)]


def to_srt(result, max_line_chars: int = LINE_WIDTH) -> str:
    parts = []
    for i, (a, b, text, who) in enumerate(speaker_cues(result, max_line_chars), 1):
        text = text if who is None else f"[{who}] {text}"
        parts.append(f"{i}\n{_ts(a, ',')} --> {_ts(b, ',')}\n{text}\n")
    return "\n".join(parts)


def to_vtt(result, max_line_chars: int = LINE_WIDTH) -> str:
    parts = ["WEBVTT\n"]
    for a, b, text, who in speaker_cues(result, max_line_chars):
        text = text if who is None else f"<v {who}>{text}"
        parts.append(f"{_ts(a, '.')} --> {_ts(b, '.')}\n{text}\n")
    return "\n".join(parts)


def to_rttm(result) -> str:
    """The diarization's turns as RTTM lines (NIST's format: type, file id, channel 1, onset, duration,
    speaker name; the other fields <NA>); the file id is the audio's file name without its extension."""
    if result.turns is None:
        raise AsrggufError("the rttm format needs speaker turns: transcribe with diarize (--diarize)")
    stem = re.sub(r"\s+", "_", PurePath(str(result.audio)).stem or "audio")
    return "".join(f"SPEAKER {stem} 1 {t[0]:.3f} {t[1] - t[0]:.3f} <NA> <NA> {t[2]} <NA> <NA>\n"
                   for t in result.turns)


def to_txt(result) -> str:
    return result.text + "\n"


def to_json(result, indent: int | None = None) -> str:
    return json.dumps(result.to_dict(), ensure_ascii=False, indent=indent) + "\n"


def render(result, fmt: str, max_line_chars: int = LINE_WIDTH) -> str:
    """A Transcription as txt, json, srt, vtt or rttm text (srt/vtt lines of at most max_line_chars)."""
    if fmt == "txt":
        return to_txt(result)
    if fmt == "json":
        return to_json(result)
    if fmt == "srt":
        return to_srt(result, max_line_chars)
    if fmt == "vtt":
        return to_vtt(result, max_line_chars)
    if fmt == "rttm":
        return to_rttm(result)
    raise ValueError(f"unknown format {fmt!r} ({', '.join(FORMATS)})")
