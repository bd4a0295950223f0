"""The one exception type users see: a one-line message, printed by the CLI without a traceback."""


class AsrggufError(Exception):
    """A problem with the user's input (file, model, option) that has a clear one-line message."""
