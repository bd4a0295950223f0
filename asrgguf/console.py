"""What the command line shows on a terminal: the progress bar (audio seconds, real-time factor), error
lines that do not break it, and standard output that ends the run in one line when its reader goes
away. Presentation only: used by asrgguf/cli.py, never by the library."""
from __future__ import annotations

import contextlib
import os
import sys
import time

from .errors import AsrggufError


def progress_wanted(quiet: bool, progress: bool | None) -> bool:
    if quiet:
        return False
    if progress:
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Audio seconds done / total on stderr, with the real-time factor (wall / audio) so far."""

    def __init__(self, enabled: bool, total_seconds: float | None = None, desc: str = "audio"):
        self.enabled = enabled
        self.t0 = time.perf_counter()
        self.done = 0.0
        self.bar = None
        if enabled:
            from tqdm import tqdm

            fmt = ("{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}{postfix}]"
                   if total_seconds else "{desc}: {n:.0f} s audio [{elapsed}{postfix}]")
            self.bar = tqdm(total=total_seconds or None, unit="s", desc=desc, file=sys.stderr,
                            dynamic_ncols=True, leave=True, bar_format=fmt)

    def add_total(self, seconds: float) -> None:
        if self.bar is not None:
            self.bar.total = (self.bar.total or 0) + seconds
            self.bar.refresh()

    def update(self, seconds: float) -> None:
        self.done += seconds
        if self.bar is not None:
            if self.bar.total and self.bar.n + seconds > self.bar.total:  # header durations are estimates
                self.bar.total = self.bar.n + seconds
            self.bar.update(seconds)
            wall = time.perf_counter() - self.t0
            self.bar.set_postfix_str(f"RTF {wall / self.done:.3f}" if self.done else "")

    def set_desc(self, desc: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(desc[-40:])

    def write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()




class Stdout:
    """Standard output that ends the run with one line when the reader goes away (`... | head`)."""

    def write(self, text: str) -> None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            # nothing more can be printed; point stdout at /dev/null so the exit's flush is quiet too
            with contextlib.suppress(OSError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            raise AsrggufError("standard output was closed; stopped") from None


