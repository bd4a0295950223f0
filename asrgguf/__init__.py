"""asrgguf: Qwen3-ASR with a PyTorch audio encoder and a llama.cpp GGUF text decoder."""
from .errors import AsrggufError
from .transcribe import Result, Transcriber

__version__ = "0.1.0"
__all__ = ["Transcriber", "Result", "AsrggufError", "__version__"]
