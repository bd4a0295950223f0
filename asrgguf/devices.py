"""The encoder's torch device and dtype, picked from names (auto: a GPU when torch has one)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import AsrggufError
from .options import DTYPES

if TYPE_CHECKING:
    import torch


def pick_device(device: str = "auto") -> "torch.device":
    """The encoder's torch device: auto (mps, cuda, else cpu) or a name, checked to be available."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise AsrggufError("--device cuda: this torch has no CUDA device")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise AsrggufError("--device mps: this torch has no MPS device")
    if device not in ("cpu", "cuda", "mps"):
        raise AsrggufError(f"unknown --device {device!r} (auto, cpu, cuda, mps)")
    return torch.device(device)


def pick_dtype(dtype: str, device: "torch.device") -> "torch.dtype":
    """The encoder's torch dtype: auto (float32 on CPU, float16 on a GPU) or a name (float32, f16, ...)."""
    import torch

    dtype = (dtype or "auto").lower()
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if dtype not in DTYPES:
        raise AsrggufError(f"unknown --dtype {dtype!r} (auto, float32, float16, bfloat16)")
    return getattr(torch, DTYPES[dtype])


