"""Where asrgguf keeps what it makes once: quantized pairs, shipped cluster models, the native repack cache."""
from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """Where `from_pretrained` keeps quantized pairs: $ASRGGUF_CACHE, else $XDG_CACHE_HOME/asrgguf or
    ~/.cache/asrgguf."""
    base = os.environ.get("ASRGGUF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "asrgguf")
    return Path(base)
