"""asrgguf: Qwen3-ASR with a PyTorch audio encoder and a llama.cpp GGUF text decoder."""
from .errors import AsrggufError

__version__ = "0.1.0"
__all__ = ["Transcriber", "Result", "AsrggufError", "__version__"]


def __getattr__(name):  # lazy: `import asrgguf.audio` must not pull in torch and llama.cpp
    if name in ("Transcriber", "Result"):
        from . import transcribe

        return getattr(transcribe, name)
    raise AttributeError(name)
