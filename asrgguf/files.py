"""Temporary files for atomic writes: beside the target, renamed over it when complete."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temp_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new `.NAME.*.part` file in the target's directory, with the permissions a plain
    open() would give (mkstemp makes 0600: a quantized model or an output must stay readable by others)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp
