"""Open and check GGUF files (gguf-py's reader), with one-line errors for bad files."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import AsrggufError


def check_file(path: str | Path, what: str) -> None:
    """One-line errors for a GGUF path that is missing, a directory, not a regular file or unreadable."""
    import stat

    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise AsrggufError(f"{p}: no such {what} file") from None
    except OSError as e:
        raise AsrggufError(f"{p}: cannot read {what} file ({e.strerror})") from None
    if stat.S_ISDIR(st.st_mode):
        raise AsrggufError(f"{p}: is a directory, not a GGUF {what} file")
    if not stat.S_ISREG(st.st_mode):
        raise AsrggufError(f"{p}: not a regular file, not a GGUF {what} file")
    if not os.access(p, os.R_OK):
        raise AsrggufError(f"{p}: cannot read {what} file (permission denied)")


def _opened(p: Path):
    try:
        return open(p, "rb")
    except OSError as e:
        raise AsrggufError(f"{p}: cannot read ({e.strerror})") from None


def open_gguf(path: str | Path, what: str):
    """A GGUFReader for `path`; AsrggufError if missing, not GGUF, or truncated."""
    import gguf

    p = Path(path)
    check_file(p, what)
    with _opened(p) as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise AsrggufError(f"{p}: not a GGUF file")
    try:
        reader = gguf.GGUFReader(str(p), "c")  # copy-on-write map: tensors may be used in place, never written back
    except Exception as e:  # gguf-py raises ValueError, MemoryError, OverflowError, ... on corrupt headers
        raise AsrggufError(f"{p}: corrupt or truncated GGUF file ({type(e).__name__})") from None
    size = os.path.getsize(p)
    end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    if end > size:
        raise AsrggufError(f"{p}: truncated GGUF file ({size} bytes, tensors need {end})")
    reader.path = str(p)
    return reader


def field(reader, key: str, default=None):
    """A KV value as a Python scalar, string or list; `default` when absent."""
    import gguf

    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return _field_value(f)
    except (UnicodeDecodeError, IndexError, ValueError) as e:
        raise AsrggufError(f"{getattr(reader, 'path', 'GGUF file')}: corrupt value of {key!r} "
                           f"({type(e).__name__})") from None


def _field_value(f):
    import gguf

    T = gguf.GGUFValueType
    if f.types[0] == T.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if f.types[0] == T.ARRAY:
        if f.types[-1] == T.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].tolist()[0] for i in f.data]
    return f.parts[f.data[0]].tolist()[0]


_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_kv(path: str | Path, keys: set[str]) -> dict:
    """The values of `keys` from a GGUF header, reading only as far as needed.

    gguf-py's reader parses every array (a decoder's 150k-token vocabulary takes seconds);
    this walks the KV section and stops once it has the keys asked for.
    """
    import struct

    p = Path(path)
    out: dict = {}
    size = os.path.getsize(p)
    with _opened(p) as f:
        head = f.read(24)
        if head[:4] != b"GGUF":
            raise AsrggufError(f"{p}: not a GGUF file")
        if len(head) < 24:
            raise AsrggufError(f"{p}: truncated GGUF file (header ends early)")
        _, _, n_kv = struct.unpack("<IQQ", head[4:24])

        def read(n):
            if n > size - f.tell():  # a corrupt length field: never allocate more than the file holds
                raise AsrggufError(f"{p}: truncated or corrupt GGUF header (a length field points past the end)")
            b = f.read(n)
            if len(b) != n:
                raise AsrggufError(f"{p}: truncated GGUF file (header ends early)")
            return b

        def seek(n):
            if n > size - f.tell():
                raise AsrggufError(f"{p}: truncated or corrupt GGUF header (a length field points past the end)")
            f.seek(n, 1)

        def read_str():
            (n,) = struct.unpack("<Q", read(8))
            return read(n).decode("utf-8", "replace")

        def read_val(t):
            if t == 8:
                return read_str()
            if t == 9:
                (st, n) = struct.unpack("<IQ", read(12))
                if st == 8:
                    if n * 8 > size - f.tell():
                        raise AsrggufError(f"{p}: truncated or corrupt GGUF header (an array is longer than the file)")
                    return [read_str() for _ in range(n)]
                fmt = _SCALAR[st]
                return list(struct.unpack(f"<{n}{fmt}", read(n * struct.calcsize(fmt))))
            fmt = _SCALAR[t]
            return struct.unpack(f"<{fmt}", read(struct.calcsize(fmt)))[0]

        def skip_val(t):
            if t == 8:
                (n,) = struct.unpack("<Q", read(8))
                seek(n)
            elif t == 9:
                (st, n) = struct.unpack("<IQ", read(12))
                if st == 8:
                    if n * 8 > size - f.tell():
                        raise AsrggufError(f"{p}: truncated or corrupt GGUF header (an array is longer than the file)")
                    for _ in range(n):
                        (m,) = struct.unpack("<Q", read(8))
                        seek(m)
                else:
                    seek(n * struct.calcsize(_SCALAR[st]))
            else:
                seek(struct.calcsize(_SCALAR[t]))

        try:
            for _ in range(n_kv):
                if keys <= out.keys():
                    break
                key = read_str()
                (t,) = struct.unpack("<I", read(4))
                if key in keys:
                    out[key] = read_val(t)
                else:
                    skip_val(t)
        except (KeyError, struct.error, OverflowError, MemoryError, ValueError):
            raise AsrggufError(f"{p}: corrupt GGUF header") from None
    return out


def read_tensor(path: str | Path, name: str) -> np.ndarray | None:
    """One tensor of a GGUF file as float32 numpy (row-major), None when the file has no such tensor.

    Walks the header as read_kv does (gguf-py's reader would parse the whole vocabulary first) and
    reads only that tensor's bytes."""
    import struct

    import gguf

    p = Path(path)
    with open(p, "rb") as f:
        head = f.read(24)
        if len(head) < 24 or head[:4] != b"GGUF":
            raise AsrggufError(f"{p}: not a GGUF file")
        _, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
        align = 32

        def read(n):
            b = f.read(n)
            if len(b) != n:
                raise AsrggufError(f"{p}: truncated GGUF file (header ends early)")
            return b

        def read_str():
            (n,) = struct.unpack("<Q", read(8))
            return read(n).decode("utf-8", "replace")

        try:
            for _ in range(n_kv):
                key = read_str()
                (t,) = struct.unpack("<I", read(4))
                if t == 8:
                    (n,) = struct.unpack("<Q", read(8))
                    f.seek(n, 1)
                elif t == 9:
                    (st, n) = struct.unpack("<IQ", read(12))
                    if st == 8:
                        for _ in range(n):
                            (m,) = struct.unpack("<Q", read(8))
                            f.seek(m, 1)
                    else:
                        f.seek(n * struct.calcsize(_SCALAR[st]), 1)
                elif key == "general.alignment":
                    align = struct.unpack(f"<{_SCALAR[t]}", read(struct.calcsize(_SCALAR[t])))[0]
                else:
                    f.seek(struct.calcsize(_SCALAR[t]), 1)
            found = None
            for _ in range(n_tensors):
                tname = read_str()
                (nd,) = struct.unpack("<I", read(4))
                dims = struct.unpack(f"<{nd}Q", read(8 * nd))
                qtype, offset = struct.unpack("<IQ", read(12))
                if tname == name:
                    found = (dims, qtype, offset)
            start = f.tell()
            start += (-start) % align
            if found is None:
                return None
            dims, qtype, offset = found
            block, size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(qtype)]
            n = int(np.prod(dims))
            f.seek(start + offset)
            raw = np.frombuffer(read(n // block * size), np.uint8)
        except (KeyError, ValueError, struct.error):
            raise AsrggufError(f"{p}: corrupt GGUF header") from None
    Q = gguf.GGMLQuantizationType
    shape = tuple(int(d) for d in reversed(dims))
    if qtype == Q.F32:
        return raw.view(np.float32).reshape(shape).copy()
    if qtype == Q.F16:
        return raw.view(np.float16).astype(np.float32).reshape(shape)
    rows = raw.reshape(shape[0], -1)
    return gguf.quants.dequantize(rows, Q(qtype)).astype(np.float32).reshape(shape)


def tensor_to_torch(t, dtype=None, copy: bool = True):
    """A reader tensor as a torch tensor (row-major), converted with torch (fast f16 -> f32).

    copy=False: an f32/f16 tensor already of `dtype` stays in the reader's file mapping (no copy; the
    mapping lives as long as the tensor)."""
    import warnings

    import gguf
    import torch

    Q = gguf.GGMLQuantizationType
    dtype = dtype or torch.float32
    shape = tuple(int(x) for x in reversed(t.shape))
    with warnings.catch_warnings():  # a read-only map (a reader not from open_gguf) warns; nothing writes it
        warnings.simplefilter("ignore", UserWarning)
        if t.tensor_type in (Q.F32, Q.F16):
            return torch.from_numpy(np.asarray(t.data)).reshape(shape).to(dtype, copy=copy)
        if t.tensor_type == Q.Q8_0:  # in torch (both cores): a block is an f16 scale and its int8 values
            blocks = np.asarray(t.data).reshape(-1, gguf.GGML_QUANT_SIZES[Q.Q8_0][1])
            scale = torch.from_numpy(np.ascontiguousarray(blocks[:, :2]).view(np.float16)).to(torch.float32)
            values = torch.from_numpy(blocks[:, 2:].view(np.int8)).to(torch.float32)
            return values.mul_(scale).reshape(shape).to(dtype)
    return torch.from_numpy(gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)).reshape(shape).to(dtype)
