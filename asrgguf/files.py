"""Atomic writes: a temporary file beside the target, renamed over it when complete; stale temporary
files of a killed run removed."""
from __future__ import annotations

import contextlib
import glob
import os
import tempfile
import time
from pathlib import Path

from .errors import AsrggufError, check_signals

HOLD_ENV = "ASRGGUF_TEST_HOLD"


def hold_for_test(point: str) -> None:
    """Tests only: with ASRGGUF_TEST_HOLD=POINT:PATH the writer, on reaching POINT ("part": a GGUF's
    temporary file is open and its header written; "written": an output was renamed into place), creates
    PATH and waits while it exists (at most 300 s), acting on signals as it waits. A test that sees PATH
    knows where the writer is and signals it there, without timing."""
    hook = os.environ.get(HOLD_ENV, "")
    want, _, flag = hook.partition(":")
    if want != point or not flag:
        return
    Path(flag).touch()
    t_end = time.monotonic() + 300
    while os.path.exists(flag) and time.monotonic() < t_end:
        check_signals()
        time.sleep(0.01)


def temp_beside(path: Path) -> tuple[int, str]:
    """(fd, name) of a new `.NAME.*.part` file in the target's directory, with the permissions a plain
    open() would give (mkstemp makes 0600: a quantized model or an output must stay readable by others)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return fd, tmp


def temp_glob(path: Path) -> str:
    return str(path.parent / f".{glob.escape(path.name)}.*.part")


def clean_stale(path: Path) -> None:
    """Remove temp files a killed run left for this output."""
    for t in glob.glob(temp_glob(path)):
        with contextlib.suppress(OSError):
            os.unlink(t)


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp name in the same directory, fsync, then rename over the target."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temp_beside(path)
    except OSError as e:
        raise AsrggufError(f"{path}: cannot write ({e.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    hold_for_test("written")
