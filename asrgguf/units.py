"""Alignment units of a transcript (the official `encode_timestamp`'s rules) and the languages the forced
aligner supports: whitespace words for most languages, each CJK ideograph on its own, Japanese and Korean
through word splitters; only letters, digits and apostrophes kept. Used by the aligner and by the
subtitle writer (cue times from word times)."""
from __future__ import annotations

import lzma
import unicodedata
from pathlib import Path

from .errors import AsrggufError
from .languages import normalize_language

# the languages of the published Qwen3-ForcedAligner-0.6B's model card
ALIGNER_LANGUAGES = ("Chinese", "English", "Cantonese", "French", "German", "Italian", "Japanese", "Korean",
                     "Portuguese", "Russian", "Spanish")
MAX_ALIGN_SECONDS = 180.0   # the official MAX_FORCE_ALIGN_INPUT_SECONDS
_KO_WORDS = Path(__file__).resolve().parent / "data" / "korean_words.txt.xz"   # the official word list


def aligner_language(value) -> str:
    """A language name or code the aligner supports -> its canonical name; else a one-line error."""
    name = normalize_language(value)
    if name is None:
        raise AsrggufError("alignment needs the language of the text (--language; one of "
                           f"{', '.join(ALIGNER_LANGUAGES)})")
    if name not in ALIGNER_LANGUAGES:
        raise AsrggufError(f"the aligner does not support {name} (it supports {', '.join(ALIGNER_LANGUAGES)})")
    return name


# --- text units (the official encode_timestamp's rules)

def _kept(ch: str) -> bool:
    return ch == "'" or unicodedata.category(ch)[0] in "LN"


def _clean(word: str) -> str:
    return "".join(ch for ch in word if _kept(ch))


def _is_cjk(ch: str) -> bool:
    c = ord(ch)
    return (0x4E00 <= c <= 0x9FFF or 0x3400 <= c <= 0x4DBF or 0x20000 <= c <= 0x2A6DF or 0x2A700 <= c <= 0x2B73F
            or 0x2B740 <= c <= 0x2B81F or 0x2B820 <= c <= 0x2CEAF or 0xF900 <= c <= 0xFAFF)


def _split_cjk(word: str) -> list[str]:
    """Every CJK ideograph its own unit; the runs of other characters between them kept together."""
    out, run = [], ""
    for ch in word:
        if _is_cjk(ch):
            if run:
                out.append(run)
                run = ""
            out.append(ch)
        else:
            run += ch
    if run:
        out.append(run)
    return out


_KO_TOKENIZER = None


def _japanese_words(text: str) -> list[str]:
    try:
        import nagisa
    except ImportError:
        raise AsrggufError("Japanese alignment needs the nagisa word splitter: pip install 'asrgguf[align-ja]'") from None
    return list(nagisa.tagging(text).words)


def _korean_words(text: str) -> list[str]:
    global _KO_TOKENIZER
    if _KO_TOKENIZER is None:
        try:
            from soynlp.tokenizer import LTokenizer
        except ImportError:
            raise AsrggufError("Korean alignment needs the soynlp word splitter: pip install 'asrgguf[align-ko]'") from None
        words = lzma.decompress(_KO_WORDS.read_bytes()).decode("utf-8").split()
        _KO_TOKENIZER = LTokenizer(scores={w: 1.0 for w in words})
    return list(_KO_TOKENIZER.tokenize(text))


def split_units(text: str, language: str) -> list[str]:
    """The transcript as alignment units: Chinese (and any CJK ideograph) per character, Japanese and
    Korean by word splitters, other languages by whitespace; only letters, digits and apostrophes kept."""
    lang = (language or "").lower()
    if lang == "japanese":
        return [w for w in (_clean(x) for x in _japanese_words(text)) if w]
    if lang == "korean":
        return [w for w in (_clean(x) for x in _korean_words(text)) if w]
    units: list[str] = []
    for word in text.split():
        w = _clean(word)
        if w:
            units.extend(_split_cjk(w))
    return units
