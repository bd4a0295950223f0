"""Resident pages of a read-only file mapping handed back to the kernel (madvise DONTNEED).

The audio encoder computes from its f16 weights where they lie in the mmproj's file map. Once a layer
has run, its pages can be dropped from the process: a later read faults them in again from the page
cache (the file's data is unchanged; nothing writes these maps), so the encoder's weights are resident
one layer at a time instead of whole. Linux and other systems with `mmap.madvise`; elsewhere a no-op.
"""
from __future__ import annotations

import mmap

import numpy as np

PAGE = mmap.PAGESIZE


class MappedFile:
    """The mmap behind a numpy memmap (gguf-py's reader.data) and the address its byte 0 lies at."""

    def __init__(self, arr: np.memmap):
        self._mmap = getattr(arr, "_mmap", None)
        offset = int(getattr(arr, "offset", 0))
        self._base = int(arr.ctypes.data) - (offset - offset % mmap.ALLOCATIONGRANULARITY)
        self._size = len(self._mmap) if self._mmap is not None else 0

    @property
    def usable(self) -> bool:
        return self._mmap is not None and hasattr(self._mmap, "madvise") and hasattr(mmap, "MADV_DONTNEED")

    def span(self, addr: int, nbytes: int) -> tuple[int, int] | None:
        """The whole pages covering [addr, addr + nbytes) as (start, length) within the map; None if outside."""
        rel = addr - self._base
        if not self.usable or nbytes <= 0 or rel < 0 or rel + nbytes > self._size:
            return None
        start = rel - rel % PAGE
        end = min(self._size, -(-(rel + nbytes) // PAGE) * PAGE)
        return start, end - start

    def release(self, spans) -> None:
        """Drop the resident pages of these spans (from `span`)."""
        for start, length in spans:
            self._mmap.madvise(mmap.MADV_DONTNEED, start, length)

    def release_all(self) -> None:
        if self.usable and self._size:
            self._mmap.madvise(mmap.MADV_DONTNEED, 0, self._size)
