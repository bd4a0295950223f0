"""Parse the model's raw generation as the official package does (`parse_asr_output`).

Raw output is `language {Name}<asr_text>{text}`; `language None` means no speech. With a forced
language the prompt already ends in `<asr_text>` and the whole output is text. Long runs of a
repeated character or pattern are collapsed first (the official `detect_and_fix_repetitions`).
The texts of a recording's pieces are joined as the official package joins them (with a space
between two pieces of space-delimited script, where the official "" glues English words together).
"""
from __future__ import annotations

import re
from typing import Iterable

ASR_TEXT_TAG = "<asr_text>"
LANG_PREFIX = "language "
REPEAT_THRESHOLD = 20


def _collapse_char_runs(s: str, thresh: int) -> str:
    out, i, n = [], 0, len(s)
    while i < n:
        j = i + 1
        while j < n and s[j] == s[i]:
            j += 1
        out.append(s[i] if j - i > thresh else s[i:j])
        i = j
    return "".join(out)


def _collapse_patterns(s: str, thresh: int, max_len: int = 20) -> str:
    """Keep one copy of the first pattern (1..max_len chars) repeated >= thresh times, recursively after it."""
    n = len(s)
    if n < thresh * 2:
        return s
    out = []
    i = 0
    while i <= n - thresh * 2:
        for k in range(1, max_len + 1):
            if i + k * thresh > n:
                break
            pat = s[i:i + k]
            if all(s[i + r * k:i + r * k + k] == pat for r in range(1, thresh)):
                end = i + thresh * k
                while end + k <= n and s[end:end + k] == pat:
                    end += k
                return "".join(out) + pat + _collapse_patterns(s[end:], thresh, max_len)
        out.append(s[i])
        i += 1
    return "".join(out) + s[i:]


def fix_repetitions(text: str, threshold: int = REPEAT_THRESHOLD) -> str:
    return _collapse_patterns(_collapse_char_runs(text, threshold), threshold)


def parse_asr_output(raw: str | None, forced_language: str | None = None,
                     repetition_guard: bool = True) -> tuple[str, str]:
    """(language, text); language '' when unknown or no speech."""
    if raw is None:
        return "", ""
    s = str(raw).strip()
    if not s:
        return "", ""
    if repetition_guard:
        s = fix_repetitions(s)
    if forced_language:
        return forced_language, s
    if ASR_TEXT_TAG not in s:
        return "", s.strip()
    meta, text = s.split(ASR_TEXT_TAG, 1)
    if "language none" in meta.lower():
        return "", text.strip()
    lang = ""
    for line in meta.splitlines():
        line = line.strip()
        if not line:
            continue
        if line.lower().startswith(LANG_PREFIX):
            val = line[len(LANG_PREFIX):].strip()
            if val:
                lang = val[:1].upper() + val[1:].lower()
            break
    return lang, text.strip()


# --------------------------------------------------------------------------- pieces' texts
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\u0e00-\u0e7f"
                  r"\u3000-\u303f\uff00-\uffef]")


def join_texts(texts: Iterable[str]) -> str:
    """Pieces' texts joined: "" as the official package where a side is CJK/Thai or whitespace, else " "."""
    out = ""
    for t in texts:
        if not t:
            continue
        if out and not out[-1].isspace() and not t[0].isspace() and not _CJK.match(out[-1]) \
                and not _CJK.match(t[0]):
            out += " "
        out += t
    return out


def merge_languages(langs: Iterable[str]) -> str:
    """The official merge_languages: order kept, consecutive duplicates and empties dropped."""
    out: list[str] = []
    prev = None
    for x in langs:
        x = (x or "").strip()
        if not x or x == prev:
            continue
        out.append(x)
        prev = x
    return ",".join(out)


_SENT_END = re.compile(r"(?<=[.!?;。！？；])[\"'”’)\]]*\s+|(?<=[。！？；])")


def split_sentences(text: str) -> list[str]:
    parts = [p.strip() for p in _SENT_END.split(text)]
    return [p for p in parts if p]


def sentence_times(text: str, start: float, end: float) -> list[dict]:
    """Sentences of a piece with times interpolated by character count (approximate inside a piece)."""
    sents = split_sentences(text)
    if not sents:
        return []
    weights = [max(1, len(re.sub(r"\s", "", s))) for s in sents]
    total = float(sum(weights))
    out, acc = [], 0
    for s, w in zip(sents, weights):
        a = start + (end - start) * acc / total
        acc += w
        b = end if acc == total else start + (end - start) * acc / total
        out.append({"start": round(a, 3), "end": round(b, 3), "text": s})
    return out
