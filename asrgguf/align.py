"""Word timestamps with Qwen3-ForcedAligner on the engine's own stages.

The aligner is Qwen3-ASR's design with a classifier head: one forward pass (no generation, no chat
template) over `<|audio_start|>` + audio embeddings + `<|audio_end|>` + the transcript cut into units,
each unit followed by two `<timestamp>` tokens. The class with the highest score at a `<timestamp>`
position, times `timestamp_segment_time` (80 ms), is a unit's start (first) or end (second); a
longest-non-decreasing-run repair makes the times monotonic (the official `fix_timestamp`).

The audio goes through the same log-mel and PyTorch encoder as transcription (`Transcriber.encode`);
the decoder is the same llama.cpp `qwen3vl` GGUF path, with a context that returns final hidden states
(embeddings on, pooling none); the head (classify_num x hidden, stored in the decoder GGUF under
llama.cpp's classifier-head name, which llama.cpp loads and leaves unused without rank pooling) is
applied here to the `<timestamp>` rows only.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from . import gguf_names as names
from .errors import AsrggufError
from .results import Word
from .transcribe import Transcriber
from .units import MAX_ALIGN_SECONDS, aligner_language, split_units


# --- times

def repair(values) -> list[int]:
    """Monotonic times: the official fix_timestamp's rule.

    The longest non-decreasing subsequence (earliest predecessor on ties) is kept; a run of at most two
    values outside it takes the nearer kept neighbour's value (the left one on a tie); a longer run is
    spread evenly between its kept neighbours (or copies the one it has)."""
    v = [float(x) for x in np.asarray(values).reshape(-1)]
    n = len(v)
    if n == 0:
        return []
    a = np.asarray(v)
    dp = np.ones(n, np.int64)
    parent = np.full(n, -1, np.int64)
    for i in range(1, n):
        ok = a[:i] <= a[i]
        if ok.any():
            cand = np.where(ok, dp[:i], 0)
            best = int(cand.max())
            if best + 1 > dp[i]:
                dp[i] = best + 1
                parent[i] = int(np.argmax(cand == best))
    keep = np.zeros(n, bool)
    i = int(np.argmax(dp))
    while i != -1:
        keep[i] = True
        i = int(parent[i])
    out = list(v)
    i = 0
    while i < n:
        if keep[i]:
            i += 1
            continue
        j = i
        while j < n and not keep[j]:
            j += 1
        left = next((out[k] for k in range(i - 1, -1, -1) if keep[k]), None)
        right = next((out[k] for k in range(j, n) if keep[k]), None)
        for k in range(i, j):
            if j - i <= 2:
                if left is None:
                    out[k] = right
                elif right is None:
                    out[k] = left
                else:
                    out[k] = left if k - (i - 1) <= j - k else right
            elif left is not None and right is not None:
                out[k] = left + (right - left) / (j - i + 1) * (k - i + 1)
            else:
                out[k] = left if left is not None else right
        i = j
    return [int(x) for x in out]


def find_aligner(model) -> str:
    """An aligner beside a model: another decoder GGUF with a timestamp head in a decoder's directory,
    or a forced-aligner checkpoint directory beside a checkpoint directory."""
    import json

    from . import demo
    from .gguf_file import read_kv

    hint = "--timestamps word needs an aligner: --aligner ALIGNER.gguf|DIR (a quantized Qwen3-ForcedAligner)"
    if str(model) == demo.NAME:
        return demo.NAME
    if not model:
        raise AsrggufError(hint)
    p = Path(model)
    if p.is_file():
        for c in sorted(p.parent.glob("*.gguf")):
            if c.name.startswith("mmproj-") or c.resolve() == p.resolve():
                continue
            try:
                if names.KEY_TIMESTAMP_TOKEN in read_kv(c, {names.KEY_TIMESTAMP_TOKEN}):
                    return str(c)
            except AsrggufError:
                continue
    elif p.is_dir():
        for c in sorted(p.resolve().parent.iterdir()):
            if c.is_dir() and c != p.resolve() and (c / "config.json").is_file():
                try:
                    cfg = json.loads((c / "config.json").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    continue
                if "forced_aligner" in str(cfg.get("thinker_config", {}).get("model_type", "")):
                    return str(c)
    raise AsrggufError(f"{hint}; none found beside {model}")


class Aligner:
    """Qwen3-ForcedAligner: a PyTorch audio encoder and a llama.cpp GGUF decoder, with its head here."""

    def __init__(self, engine, head: np.ndarray, timestamp_id: int, segment_ms: float):
        self.engine = engine            # a Transcriber over the aligner's pair: its stages, not its generation
        self.decoder = engine.decoder
        self.head = np.ascontiguousarray(head, np.float32)      # (classify_num, hidden)
        self.timestamp_id = int(timestamp_id)
        self.segment_ms = float(segment_ms)
        if self.head.shape[1] != self.decoder.n_embd:
            raise AsrggufError(f"{self.decoder.path}: aligner head width {self.head.shape[1]} does not match "
                               f"the decoder's {self.decoder.n_embd}")
        if self.decoder.token_id("<timestamp>") != self.timestamp_id:
            raise AsrggufError(f"{self.decoder.path}: <timestamp> is not token {self.timestamp_id}")
        self.model_info = dict(engine.model_info)
        self.load_s = engine.load_s

    @staticmethod
    def check_file(decoder) -> dict:
        from .decoder import Decoder
        from .gguf_file import read_kv

        Decoder.check_file(decoder)
        kv = read_kv(decoder, {names.KEY_TIMESTAMP_TOKEN, names.KEY_TIMESTAMP_MS})
        if names.KEY_TIMESTAMP_TOKEN not in kv:
            raise AsrggufError(f"{decoder}: not an aligner decoder (no timestamp head); quantize a "
                               f"Qwen3-ForcedAligner checkpoint with 'asrgguf quantize'")
        return kv

    @classmethod
    def _wrap(cls, engine, kv: dict) -> "Aligner":
        from .gguf_file import read_tensor

        t0 = time.perf_counter()
        path = engine.model_info["decoder"]
        head = read_tensor(path, names.ALIGNER_HEAD)
        if head is None:
            raise AsrggufError(f"{path}: the aligner head ({names.ALIGNER_HEAD}) is missing")
        engine.load_s += time.perf_counter() - t0
        return cls(engine, head, kv[names.KEY_TIMESTAMP_TOKEN], kv.get(names.KEY_TIMESTAMP_MS, 80.0))

    @classmethod
    def from_gguf(cls, decoder: str | Path, mmproj: str | Path | None = None, device: str = "auto",
                  dtype: str = "auto", n_gpu_layers: int | None = None, threads: int | None = None,
                  n_ctx: int = 512, native: bool | None = None) -> "Aligner":
        kv = cls.check_file(decoder)
        engine = Transcriber.from_gguf(decoder, mmproj, device=device, dtype=dtype, n_gpu_layers=n_gpu_layers,
                                       threads=threads, n_ctx=n_ctx, embeddings=True, native=native)
        return cls._wrap(engine, kv)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, outtype: str = "q8_0", cache_dir: str | Path | None = None,
                        **kw) -> "Aligner":
        """Quantize a Qwen3-ForcedAligner checkpoint once into a cache, then load the pair from there."""
        from .checkpoint import Checkpoint

        if not Checkpoint(model_dir).aligner:
            raise AsrggufError(f"{model_dir}: not a Qwen3-ForcedAligner checkpoint (its thinker model_type "
                               f"does not name a forced aligner)")
        engine = Transcriber.from_pretrained(model_dir, outtype, cache_dir, embeddings=True, **kw)
        return cls._wrap(engine, cls.check_file(engine.model_info["decoder"]))

    @classmethod
    def load(cls, path: str | Path, **kw) -> "Aligner":
        """A decoder GGUF (mmproj beside it), a checkpoint directory, or "demo" (the packaged demo aligner;
        a directory named demo: "./demo")."""
        from . import demo

        no_mmproj = {k: v for k, v in kw.items() if k != "mmproj"}
        if str(path) == demo.NAME:
            return cls.from_gguf(demo.ALIGNER, demo.MMPROJ, **no_mmproj)
        p = Path(path)
        if p.is_dir():
            return cls.from_pretrained(p, **no_mmproj)
        return cls.from_gguf(p, **kw)

    # --- the forward pass
    def classes(self, wav: np.ndarray, units: list[str], timings: dict | None = None) -> np.ndarray:
        """The argmax class at every <timestamp> position (two per unit) for 16 kHz samples."""
        return self.scores(wav, units, timings).argmax(axis=1)

    def scores(self, wav: np.ndarray, units: list[str], timings: dict | None = None) -> np.ndarray:
        """The head's scores (len(units) * 2, classify_num) at the <timestamp> positions."""
        emb, t = self.engine.encode(wav)
        t0 = time.perf_counter()
        dec = self.decoder
        before = dec.tokenize("<|audio_start|>")
        after = dec.tokenize("<|audio_end|>" + "".join(u + "<timestamp><timestamp>" for u in units))
        ids = np.asarray(after, np.int32)
        rows = np.flatnonzero(ids == self.timestamp_id)
        if len(rows) != 2 * len(units):
            raise AsrggufError("internal error: the text split the <timestamp> tokens")
        dec.ensure_ctx(len(before) + len(emb) + len(after))
        dec.clear()
        pos = dec.eval_tokens(before, 0)
        pos = dec.eval_embeddings(emb, pos)
        ta = time.perf_counter()
        hidden = dec.hidden_states(ids, pos, rows)
        dec.clear()
        t1 = time.perf_counter()
        scores = hidden @ self.head.T
        if timings is not None:
            t.update(decoder_audio=ta - t0, decoder_text=t1 - ta, head=time.perf_counter() - t1)
            for k, v in t.items():
                timings[k] = timings.get(k, 0.0) + v
        return scores

    def _times(self, wav: np.ndarray, units: list[str], timings: dict | None = None) -> list[tuple[float, float]]:
        if not units:
            return []
        ms = repair(self.classes(wav, units, timings) * self.segment_ms)
        return [(round(ms[2 * i] / 1000.0, 3), round(ms[2 * i + 1] / 1000.0, 3)) for i in range(len(units))]

    def align(self, audio, text: str, language: str, timings: dict | None = None) -> list:
        """Word (unit) times for a transcript of audio of at most 180 s (the official limit for one pass).

        audio: any source the Transcriber takes. language: one of ALIGNER_LANGUAGES (name or code).
        Returns `Word`s (text, start, end in seconds), as the official `Qwen3ForcedAligner.align`."""
        lang = aligner_language(language)
        units = split_units(text or "", lang)
        name, _, pieces = self.engine.open_pieces(audio, MAX_ALIGN_SECONDS)
        first = next(pieces, None)
        if first is None:
            raise AsrggufError(f"{name}: no audio")
        if next(pieces, None) is not None:
            raise AsrggufError(f"{name}: longer than {MAX_ALIGN_SECONDS:g} s; the aligner takes at most that at "
                               f"once (align a long recording with 'asrgguf run --timestamps word', which aligns "
                               f"each piece's own transcript)")
        return [Word(u, a, b) for u, (a, b) in zip(units, self._times(first.wav, units, timings))]

    def words(self, piece, segment) -> list:
        """The words of a transcribed piece (the engine's hook for timestamps="word"): the segment's text
        aligned to the piece's audio, in recording time, kept inside the piece."""
        units = split_units(segment.text or "", segment.language or "")
        times = self._times(piece.wav, units)
        lo, hi = piece.start_s, piece.end_s
        out = []
        for u, (a, b) in zip(units, times):
            a = min(max(piece.recording_time(a), lo), hi)
            b = min(max(piece.recording_time(b, end=True), a), hi)
            out.append(Word(u, round(a, 3), round(b, 3)))
        return out

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> "Aligner":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
