"""OpenAI Realtime transcription sessions: the configuration a client sends (`session.update`, GA, or
`transcription_session.update`, beta), checked field by field into a `SessionConfig`; every mistake is a
`ProtocolError` naming the field (realtime.py turns it into an `error` event)."""
from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import AsrggufError
from .languages import normalize_language

RATES = (24000, 16000)                        # pcm16 rates: OpenAI's 24 kHz and 16 kHz


@dataclass(frozen=True)
class TurnDetection:
    """server_vad settings (OpenAI's defaults)."""
    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500


@dataclass(frozen=True)
class SessionConfig:
    model: str = ""
    language: str | None = None            # canonical name (asrgguf.languages) or None for auto
    language_code: str | None = None       # as the client gave it (echoed back)
    prompt: str = ""
    sample_rate: int = 24000
    turn_detection: TurnDetection | None = TurnDetection()


# --------------------------------------------------------------------------- what the engine is told
class ProtocolError(Exception):
    """A client event the session refuses; becomes an `error` event."""

    def __init__(self, message: str, code: str = "invalid_value", param: str | None = None):
        super().__init__(message)
        self.message, self.code, self.param = message, code, param


def _unknown(path: str) -> ProtocolError:
    return ProtocolError(f"Unknown parameter: '{path}'.", "unknown_parameter", path)


def check_keys(obj, allowed: set[str], path: str) -> dict:
    if not isinstance(obj, dict):
        raise ProtocolError(f"Invalid type for '{path}': expected an object, but got {json_type(obj)}.",
                            "invalid_type", path)
    for k in obj:
        if k not in allowed:
            raise _unknown(f"{path}.{k}" if path else k)
    return obj


def json_type(v) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number")


def _number(v, path: str, lo: float, hi: float, integer: bool = False):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and lo <= v <= hi
    if ok and integer and int(v) != v:
        ok = False
    if not ok:
        kind = "an integer" if integer else "a number"
        raise ProtocolError(f"Invalid value for '{path}': expected {kind} from {lo:g} to {hi:g}, got {v!r}.",
                            "invalid_value", path)
    return int(v) if integer else float(v)


def _string_or_null(v, path: str) -> str | None:
    if v is not None and not isinstance(v, str):
        raise ProtocolError(f"Invalid type for '{path}': expected a string, but got {json_type(v)}.",
                            "invalid_type", path)
    return v


# --------------------------------------------------------------------------- parsing session updates
def _rate_from_format(fmt, path: str) -> int:
    """GA `audio/pcm` object (or the beta string "pcm16") -> the sample rate."""
    if fmt == "pcm16":
        return 24000
    if isinstance(fmt, str):
        raise ProtocolError(f"Unsupported input audio format {fmt!r} at '{path}': asrgguf accepts pcm16 "
                            f"(16-bit PCM, 24 kHz or 16 kHz).", "unsupported_audio_format", path)
    check_keys(fmt, {"type", "rate"}, path)
    kind = fmt.get("type", "audio/pcm")
    if kind != "audio/pcm":
        raise ProtocolError(f"Unsupported input audio format {kind!r} at '{path}.type': asrgguf accepts "
                            f"audio/pcm (16-bit PCM, 24 kHz or 16 kHz).", "unsupported_audio_format", f"{path}.type")
    rate = fmt.get("rate", 24000)
    if rate not in RATES or isinstance(rate, bool):
        raise ProtocolError(f"Unsupported sample rate {rate!r} at '{path}.rate': 24000 or 16000.",
                            "unsupported_audio_format", f"{path}.rate")
    return int(rate)


def _turn_detection(td, path: str, current: TurnDetection | None) -> TurnDetection | None:
    if td is None:
        return None
    check_keys(td, {"type", "threshold", "prefix_padding_ms", "silence_duration_ms", "create_response",
                     "interrupt_response", "idle_timeout_ms", "eagerness"}, path)
    kind = td.get("type", "server_vad")
    if kind != "server_vad":
        raise ProtocolError(f"Unsupported turn detection {kind!r} at '{path}.type': asrgguf has server_vad "
                            f"(or null: commit manually).", "invalid_value", f"{path}.type")
    if "eagerness" in td:
        raise _unknown(f"{path}.eagerness")   # semantic_vad only
    base = TurnDetection()   # a new object: the fields it omits take the defaults
    return TurnDetection(
        threshold=_number(td.get("threshold", base.threshold), f"{path}.threshold", 0.0, 1.0),
        prefix_padding_ms=_number(td.get("prefix_padding_ms", base.prefix_padding_ms),
                                  f"{path}.prefix_padding_ms", 0, 10000, True),
        silence_duration_ms=_number(td.get("silence_duration_ms", base.silence_duration_ms),
                                    f"{path}.silence_duration_ms", 0, 60000, True))


def _transcription(tr, path: str, cfg: SessionConfig, ga: bool) -> SessionConfig:
    if tr is None:
        return cfg
    keys = {"model", "language", "prompt"} | ({"delay", "keywords", "languages"} if ga else set())
    check_keys(tr, keys, path)
    if "model" in tr:
        cfg = replace(cfg, model=_string_or_null(tr["model"], f"{path}.model") or "")
    if "language" in tr:
        code = _string_or_null(tr["language"], f"{path}.language")
        try:
            name = normalize_language(code)
        except AsrggufError as e:
            raise ProtocolError(str(e), "invalid_value", f"{path}.language") from None
        cfg = replace(cfg, language=name, language_code=code or None)
    if "prompt" in tr:
        cfg = replace(cfg, prompt=_string_or_null(tr["prompt"], f"{path}.prompt") or "")
    return cfg


def parse_ga_session(s, cfg: SessionConfig) -> SessionConfig:
    """`session.update`'s session (GA) applied to cfg: only the fields present change."""
    check_keys(s, {"type", "audio", "include", "model", "object", "id", "expires_at"}, "session")
    if s.get("type") != "transcription":
        raise ProtocolError(f"Invalid value for 'session.type': {s.get('type')!r}; this endpoint serves "
                            f"transcription sessions only (session.type = \"transcription\").",
                            "invalid_value", "session.type")
    _include(s.get("include"), "session.include")
    if s.get("audio") is None:
        return cfg
    audio = check_keys(s["audio"], {"input"}, "session.audio")
    inp = audio.get("input")
    if inp is None:
        return cfg
    check_keys(inp, {"format", "transcription", "turn_detection", "noise_reduction"}, "session.audio.input")
    if inp.get("format") is not None:
        cfg = replace(cfg, sample_rate=_rate_from_format(inp["format"], "session.audio.input.format"))
    cfg = _transcription(inp.get("transcription"), "session.audio.input.transcription", cfg, ga=True)
    if "turn_detection" in inp:
        cfg = replace(cfg, turn_detection=_turn_detection(inp["turn_detection"],
                                                          "session.audio.input.turn_detection", cfg.turn_detection))
    if inp.get("noise_reduction") is not None:
        check_keys(inp["noise_reduction"], {"type", "strength"}, "session.audio.input.noise_reduction")
    return cfg


def parse_beta_session(s, cfg: SessionConfig) -> SessionConfig:
    """`transcription_session.update`'s session (beta) applied to cfg."""
    check_keys(s, {"input_audio_format", "input_audio_transcription", "turn_detection",
                    "input_audio_noise_reduction", "include", "modalities", "client_secret"}, "session")
    _include(s.get("include"), "session.include")
    if s.get("input_audio_format") is not None:
        cfg = replace(cfg, sample_rate=_rate_from_format(s["input_audio_format"], "session.input_audio_format"))
    cfg = _transcription(s.get("input_audio_transcription"), "session.input_audio_transcription", cfg, ga=False)
    if "turn_detection" in s:
        cfg = replace(cfg, turn_detection=_turn_detection(s["turn_detection"], "session.turn_detection",
                                                          cfg.turn_detection))
    if s.get("input_audio_noise_reduction") is not None:
        check_keys(s["input_audio_noise_reduction"], {"type"}, "session.input_audio_noise_reduction")
    return cfg


def _include(v, path: str) -> None:
    if v is None:
        return
    if not isinstance(v, list) or any(x != "item.input_audio_transcription.logprobs" for x in v):
        raise ProtocolError(f"Invalid value for '{path}': expected a list of "
                            f"\"item.input_audio_transcription.logprobs\".", "invalid_value", path)


# --------------------------------------------------------------------------- the session
