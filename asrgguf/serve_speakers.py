"""The server's speaker fields: the form fields diarize, speakers, min_speakers, max_speakers checked into a
`DiarizeOptions`, and the speaker added to verbose_json's segments and words."""
from __future__ import annotations

from .errors import AsrggufError
from .serve_engine import ApiError


def with_speaker(d: dict, x) -> dict:
    """With diarization (form field diarize): the segment's or word's speaker."""
    who = getattr(x, "speaker", None)
    return d if who is None else {**d, "speaker": who}


def diarize_form(form, stream: bool):
    """The form fields diarize, speakers, min_speakers, max_speakers -> DiarizeOptions or None."""
    from .speakers import DiarizeOptions, check_installed

    on = str(form.get("diarize") or "false").strip().lower() in ("true", "1", "yes")
    counts = {}
    for name in ("speakers", "min_speakers", "max_speakers"):
        v = form.get(name)
        if v is None or v == "":
            continue
        if not on:
            raise ApiError(400, f"{name} goes with diarize=true", "invalid_request")
        try:
            counts[name] = int(str(v).strip())
        except ValueError:
            raise ApiError(400, f"{name} must be a positive integer (got {str(v)[:40]!r})", "invalid_request") from None
    if not on:
        return None
    if stream:
        raise ApiError(400, "diarize does not go with stream (the speakers are known only at the end)",
                       "invalid_request")
    try:
        check_installed()
        return DiarizeOptions(**counts).checked()
    except AsrggufError as e:
        raise ApiError(400, str(e), "diarize_unavailable" if "pip install" in str(e) else "invalid_request") from None
