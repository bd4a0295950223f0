"""The languages Qwen3-ASR names in its output, and the ISO codes asrgguf accepts for them."""
from __future__ import annotations

from .errors import AsrggufError

# name -> ISO 639 code(s); names and order as the official SUPPORTED_LANGUAGES
LANGUAGES: dict[str, tuple[str, ...]] = {
    "Chinese": ("zh",), "English": ("en",), "Cantonese": ("yue",), "Arabic": ("ar",), "German": ("de",),
    "French": ("fr",), "Spanish": ("es",), "Portuguese": ("pt",), "Indonesian": ("id",), "Italian": ("it",),
    "Korean": ("ko",), "Russian": ("ru",), "Thai": ("th",), "Vietnamese": ("vi",), "Japanese": ("ja",),
    "Turkish": ("tr",), "Hindi": ("hi",), "Malay": ("ms",), "Dutch": ("nl",), "Swedish": ("sv",),
    "Danish": ("da",), "Finnish": ("fi",), "Polish": ("pl",), "Czech": ("cs",), "Filipino": ("fil", "tl"),
    "Persian": ("fa",), "Greek": ("el",), "Romanian": ("ro",), "Hungarian": ("hu",), "Macedonian": ("mk",),
}
_BY_CODE = {code: name for name, codes in LANGUAGES.items() for code in codes}


def normalize_language(value: str | None) -> str | None:
    """None/''/'auto' -> None; a name in any case or an ISO code -> the canonical name."""
    if value is None:
        return None
    s = str(value).strip()
    if not s or s.lower() == "auto":
        return None
    if s.lower() in _BY_CODE:
        return _BY_CODE[s.lower()]
    name = s[:1].upper() + s[1:].lower()  # as the official normalize_language_name
    if name in LANGUAGES:
        return name
    raise AsrggufError(f"unknown language {value!r} (see 'asrgguf languages' for the {len(LANGUAGES)} "
                       f"supported names and codes)")
