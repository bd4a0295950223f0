"""asrgguf: Qwen3-ASR with a PyTorch audio encoder and a llama.cpp GGUF text decoder."""
from .errors import AsrggufError

__version__ = "0.1.0"
__all__ = ["Transcriber", "Transcription", "TranscriptionInfo", "Segment", "Sentence", "Word", "Aligner",
           "EngineConfig", "AsrggufError", "__version__"]


def __getattr__(name):  # lazy: `import asrgguf.audio` must not pull in torch and llama.cpp
    if name == "Transcriber":
        from .transcribe import Transcriber

        return Transcriber
    if name in ("Transcription", "TranscriptionInfo", "Segment", "Sentence", "Word"):
        from . import results

        return getattr(results, name)
    if name == "EngineConfig":
        from .loading import EngineConfig

        return EngineConfig
    if name == "Aligner":
        from .align import Aligner

        return Aligner
    raise AttributeError(name)
