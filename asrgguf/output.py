"""Parse the model's raw generation as the official package does (`parse_asr_output`).

Raw output is `language {Name}<asr_text>{text}`; `language None` means no speech. With a forced
language the prompt already ends in `<asr_text>` and the whole output is text. Long runs of a
repeated character or pattern are collapsed first (the official `detect_and_fix_repetitions`).
"""
from __future__ import annotations

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
                     fix_repeats: bool = True) -> tuple[str, str]:
    """(language, text); language '' when unknown or no speech."""
    if raw is None:
        return "", ""
    s = str(raw).strip()
    if not s:
        return "", ""
    if fix_repeats:
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
