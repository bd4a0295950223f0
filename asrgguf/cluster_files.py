"""Files of a Ray batch: where outputs go (local paths or fsspec URLs) and how the model files reach
workers that cannot see them (a `Coordinator` actor on the driver's node serves them in chunks; each
node caches one copy)."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
from pathlib import Path

from .errors import AsrggufError
from .loading import EngineConfig

CHUNK = 64 << 20          # model files travel through the object store in pieces of this size


# --------------------------------------------------------------------------- where outputs go
def is_url(path: str) -> bool:
    return "://" in str(path)


def url_fs(url: str):
    import fsspec

    return fsspec.core.url_to_fs(url)


def local_root(out_dir: str) -> Path | None:
    """The local path of an output directory (file:// URLs too); None for other fsspec URLs."""
    if not is_url(out_dir):
        return Path(out_dir)
    from fsspec.implementations.local import LocalFileSystem

    fs, path = url_fs(out_dir)
    return Path(path) if isinstance(fs, LocalFileSystem) else None


def write_url(url: str, text: str) -> None:
    """An output on an fsspec file system: one whole-object write (an object store's PUT is all or
    nothing, so no reader sees half a file)."""
    fs, path = url_fs(url)
    fs.pipe_file(path, text.encode("utf-8"))


def url_exists(url: str) -> bool:
    fs, path = url_fs(url)
    return fs.exists(path)


# --------------------------------------------------------------------------- model files
def file_spec(path: str | Path) -> dict:
    st = os.stat(path)
    return {"path": str(path), "size": st.st_size, "mtime": int(st.st_mtime)}


class Coordinator:
    """The job's small helper on the driver's node: serves the model files in chunks to workers that
    cannot see them, and counts the tries of each file (a file whose worker died on it MAX_TRIES
    times is reported failed instead of tried again)."""

    def __init__(self, paths: list[str]):
        self.paths = set(paths)
        self.tries: dict[int, int] = {}

    def attempt(self, i: int) -> int:
        self.tries[i] = self.tries.get(i, 0) + 1
        return self.tries[i]

    def retried(self) -> dict[int, int]:
        return {i: n for i, n in self.tries.items() if n > 1}

    def read(self, path: str, offset: int, length: int) -> bytes:
        if path not in self.paths:
            raise ValueError(f"{path}: not a model file of this job")
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)


def local_copy(spec: dict, store, ship: bool | None) -> str:
    """A path to this model file on this node: the driver's path when the same file is here (and
    shipping is not forced), else a copy fetched once per node from the driver's `Coordinator`."""
    import fcntl

    import ray

    path = spec["path"]
    if not ship:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            if st.st_size == spec["size"] and int(st.st_mtime) == spec["mtime"]:
                return path
    if ship is False:
        raise AsrggufError(f"{path}: not on this node ({socket.gethostname()}) and not shipped")
    from .models import default_cache_dir

    d = default_cache_dir() / "ray-models"
    d.mkdir(parents=True, exist_ok=True)
    target = d / f"{spec['size']}-{spec['mtime']}-{Path(path).name}"
    with open(str(target) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one fetch per node; the other actors there wait for it
        if target.is_file() and target.stat().st_size == spec["size"]:
            return str(target)
        tmp = target.with_name(target.name + f".{os.getpid()}.part")
        with open(tmp, "wb") as f:
            for off in range(0, spec["size"], CHUNK):
                f.write(ray.get(store.read.remote(path, off, CHUNK)))
            f.flush()
            os.fsync(f.fileno())
        if tmp.stat().st_size != spec["size"]:
            tmp.unlink()
            raise AsrggufError(f"{path}: changed on the driver while it was shipped")
        os.replace(tmp, target)
    return str(target)


def model_files(engine: EngineConfig) -> tuple[EngineConfig, dict]:
    """The engine with its models as GGUF files (a checkpoint quantized once here), and the files the
    workers need: field -> file spec (decoder, mmproj, and the aligner's pair when one is named)."""
    from .models import find_mmproj, pretrained_pair

    if engine.model:
        dec, mm = pretrained_pair(engine.model)
        engine = dataclasses.replace(engine, gguf=str(dec), mmproj=str(mm), model=None)
    files = {"gguf": file_spec(engine.gguf), "mmproj": file_spec(engine.mmproj or find_mmproj(engine.gguf))}
    if engine.aligner and engine.aligner != "demo":
        al = Path(engine.aligner)
        if al.is_dir():   # a checkpoint: quantized once on the driver, its GGUF shipped
            al = pretrained_pair(al)[0]
            engine = dataclasses.replace(engine, aligner=str(al))
        files["aligner"] = file_spec(al)
        files["aligner_mmproj"] = file_spec(find_mmproj(al))
    return engine, files
