"""How to transcribe, checked once: `Options` (every keyword `Transcriber.transcribe` takes) and the
defaults every entry point shares (the command line, the server, the cluster job, Python)."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import AsrggufError
from .languages import normalize_language
from .pieces import DEFAULT_PIECE_SECONDS
from .speakers import DiarizeOptions
from .vad import VadOptions, options_for

DEFAULT_MAX_NEW_TOKENS = 512  # the official wrapper's default
DEFAULT_LINE_CHARS = 42       # srt/vtt characters per subtitle line (a common broadcast guideline)
TIMESTAMPS = ("segment", "word")
DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16",
          "f32": "float32", "f16": "float16", "bf16": "bfloat16"}


@dataclass(frozen=True)
class Options:
    """How to transcribe: every keyword `Transcriber.transcribe` takes, checked once."""
    language: str | None = None          # None: detected; else a canonical name (normalize_language)
    context: str = ""                    # text for the system prompt (names, terms)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS    # per piece
    piece_seconds: float = DEFAULT_PIECE_SECONDS    # cut long audio near every this many seconds
    parallel: int = 1                    # pieces decoded at once as parallel sequences
    repetition_guard: bool = True        # stop looping generations; collapse repeats in the text
    timestamps: str = "segment"          # "segment" (interpolated inside a piece) or "word" (the aligner)
    bench_tokens: int | None = None      # benchmarks only: exactly N tokens a piece, end-of-turn ignored
    vad: VadOptions | None = None        # voice activity: only speech reaches the model (True: the defaults)
    diarize: DiarizeOptions | None = None    # speaker labels (True: the count found; DiarizeOptions(speakers=N))

    @classmethod
    def make(cls, **kw) -> "Options":
        """Options from `transcribe`'s keywords, checked (TypeError for an unknown keyword, AsrggufError for a
        bad value); language is normalised to its canonical name."""
        bad = set(kw) - set(cls.__dataclass_fields__)
        if bad:
            raise TypeError(f"unknown transcribe option {sorted(bad)[0]!r}")
        kw = {k: v for k, v in kw.items() if v is not None or k in ("language", "bench_tokens")}
        vad = _switch(kw.pop("vad", None), VadOptions, "vad")
        diarize = _switch(kw.pop("diarize", None), DiarizeOptions, "diarize")
        o = cls(**kw)
        lang = normalize_language(o.language)
        if not (isinstance(o.max_new_tokens, int) and o.max_new_tokens >= 1):
            raise AsrggufError(f"max_new_tokens must be a positive integer (got {o.max_new_tokens!r})")
        if not (isinstance(o.piece_seconds, (int, float)) and 10 <= o.piece_seconds <= 1200):
            raise AsrggufError(f"piece_seconds must be between 10 and 1200 (got {o.piece_seconds!r})")
        if not (isinstance(o.parallel, int) and 1 <= o.parallel <= 64):
            raise AsrggufError(f"parallel must be between 1 and 64 (got {o.parallel!r})")
        if o.timestamps not in TIMESTAMPS:
            raise AsrggufError(f"unknown timestamps {o.timestamps!r} (segment, word)")
        if o.timestamps == "word" and o.piece_seconds > 180:
            raise AsrggufError(f"word timestamps align at most 180 s at once (the official limit): piece_seconds "
                               f"must be at most 180 (got {o.piece_seconds:g})")
        if o.bench_tokens is not None and not (isinstance(o.bench_tokens, int) and o.bench_tokens >= 1):
            raise AsrggufError(f"bench_tokens must be a positive integer (got {o.bench_tokens!r})")
        return cls(**{**o.__dict__, "language": lang, "context": o.context or "", "piece_seconds": float(o.piece_seconds),
                      "vad": None if vad is None else options_for(vad, float(o.piece_seconds)),
                      "diarize": None if diarize is None else diarize.checked()})


def check_device_dtype(device: str | None, dtype: str | None) -> None:
    """Unknown --device / --dtype names, before anything loads (availability is checked at load)."""
    if (device or "auto").lower() not in DEVICES:
        raise AsrggufError(f"unknown --device {device!r} (auto, cpu, cuda, mps)")
    if (dtype or "auto").lower() not in ("auto", *DTYPES):
        raise AsrggufError(f"unknown --dtype {dtype!r} (auto, float32, float16, bfloat16)")


def _switch(value, kind: type, name: str):
    """An optional stage given as True (its defaults), False/None (off) or its options object."""
    if value is True:
        return kind()
    if value is None or value is False:
        return None
    if not isinstance(value, kind):
        raise AsrggufError(f"{name} must be True, False or a {kind.__name__} (got {value!r})")
    return value
