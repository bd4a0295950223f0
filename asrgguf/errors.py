"""The one exception type users see: a one-line message, printed by the CLI without a traceback."""


class AsrggufError(Exception):
    """A problem with the user's input (file, model, option) that has a clear one-line message."""


class Terminated(BaseException):
    """SIGTERM as an exception (as KeyboardInterrupt is SIGINT's), so the code it interrupts removes its
    temporary files; the CLI exits 143."""


# Signals the CLI's handler has seen. numpy can swallow an exception raised inside its C code and raise
# a ValueError instead, so code that catches Exception checks this list, and writers that can wait a
# moment defer the signal to their next block (`deferred_signals`, `check_signals`).
SIGNALS: list[int] = []
_DEFER = [0]


def signal_exception(signum: int) -> BaseException:
    import signal

    return KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def on_signal(signum, frame) -> None:
    """The CLI's SIGINT/SIGTERM handler: raise now, or at the next `check_signals` inside `deferred_signals`."""
    SIGNALS.append(signum)
    if not _DEFER[0] or len(SIGNALS) > 1:  # a second Ctrl-C does not wait
        raise signal_exception(signum)


class deferred_signals:
    """Inside: SIGINT/SIGTERM are acted on at the next `check_signals` (a block boundary), not mid-call."""

    def __enter__(self):
        _DEFER[0] += 1
        return self

    def __exit__(self, *exc):
        _DEFER[0] -= 1
        if exc[0] is None:
            check_signals()


def check_signals() -> None:
    """Raise KeyboardInterrupt / Terminated when a signal arrived (a no-op otherwise)."""
    if SIGNALS:
        raise signal_exception(SIGNALS[-1])
