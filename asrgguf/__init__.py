"""asrgguf: Qwen3-ASR with a PyTorch audio encoder and a llama.cpp GGUF text decoder."""
from .errors import AsrggufError

__version__ = "0.1.0"
__all__ = ["Transcriber", "Transcription", "Segment", "Word", "Aligner", "AsrggufError", "__version__"]


def __getattr__(name):  # lazy: `import asrgguf.audio` must not pull in torch and llama.cpp
    if name in ("Transcriber", "Transcription", "Segment", "Word"):
        from . import transcribe

        return getattr(transcribe, name)
    if name == "Aligner":
        from .align import Aligner

        return Aligner
    raise AttributeError(name)
