"""The Qwen3 text decoder in llama.cpp, driven through llama-cpp-python's low-level API.

Prompt segments go in as token batches or embedding batches (`llama_batch` with `embd` set and
`token` NULL); every row gets explicit positions, four entries per row for the M-RoPE `qwen3vl`
layout (section-major: pos[s*n + i]), all equal since audio-only input has equal components.
Greedy decoding reuses one preallocated one-token batch, so a step costs one `llama_decode`
call and one argmax over the logits.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import gguf_names as names
from .errors import AsrggufError
from .llama_bindings import bindings

_LOG_CB = None
_LOG_LINES: list[str] = []


def quiet_llama_logs() -> None:
    """Route llama.cpp's log to a small buffer (errors are reported through AsrggufError)."""
    global _LOG_CB
    if _LOG_CB is not None:
        return
    L = bindings()

    @L.llama_log_callback
    def _cb(level, text, user_data):
        if os.environ.get("ASRGGUF_LLAMA_LOG"):
            os.write(2, text)
        _LOG_LINES.append(text.decode("utf-8", "replace"))
        del _LOG_LINES[:-50]

    _LOG_CB = _cb
    L.llama_log_set(_LOG_CB, ctypes.c_void_p())


def last_llama_error() -> str:
    """llama.cpp's most specific recent error line (its "error ...: reason" over a final "failed to ...")."""
    lines = [ln.strip() for ln in _LOG_LINES if ln.strip()]
    for word in ("error", "failed"):
        for line in reversed(lines):
            low = line.lower()
            if word in low:
                i = low.find("error loading model: ")
                return line[i + len("error loading model: "):] if i >= 0 else line
    return ""


class _Batch:
    """A llama_batch over numpy arrays we own (kept alive as long as this object)."""

    def __init__(self, capacity: int, n_embd: int | None, n_pos: int, seq_capacity: int = 1):
        L = bindings()

        self.capacity, self.n_embd, self.n_pos = capacity, n_embd, n_pos
        self.token = np.zeros(capacity, np.int32) if n_embd is None else None
        self.embd = np.zeros((capacity, n_embd), np.float32) if n_embd is not None else None
        self.pos = np.zeros(capacity * n_pos, np.int32)
        self.n_seq_id = np.ones(capacity, np.int32)
        self.seq_id_store = np.zeros((capacity, seq_capacity), np.int32)
        ptr_t = ctypes.POINTER(L.llama_seq_id)
        base = self.seq_id_store.ctypes.data
        self.seq_ptrs = (ptr_t * capacity)(*[ctypes.cast(base + i * seq_capacity * 4, ptr_t)
                                             for i in range(capacity)])
        self.logits = np.zeros(capacity, np.int8)
        self.struct = L.llama_batch()
        self.struct.token = self.token.ctypes.data_as(ctypes.POINTER(L.llama_token)) if self.token is not None else None
        self.struct.embd = self.embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float)) if self.embd is not None else None
        self.struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(L.llama_pos))
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(ctypes.POINTER(ctypes.c_int32))
        self.struct.seq_id = self.seq_ptrs
        self.struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))

    def fill(self, n: int, start_pos: np.ndarray | int, seq: np.ndarray | int = 0, want_logits_last: bool = False):
        """Positions start_pos..start_pos+n-1 (one or per-row), one sequence id per row."""
        p = np.asarray(start_pos, np.int32) + (0 if np.ndim(start_pos) else np.arange(n, dtype=np.int32))
        for s in range(self.n_pos):
            self.pos[s * n:(s + 1) * n] = p
        self.seq_id_store[:n, 0] = seq
        self.logits[:n] = 0
        if want_logits_last:
            self.logits[n - 1] = 1
        self.struct.n_tokens = n


@dataclass
class DecoderOptions:
    """How llama.cpp runs the decoder (context size, batch, threads, GPU layers, KV and attention types)."""
    n_ctx: int = 512          # grown per request (ensure_ctx): the KV cache is allocated and touched whole
    n_batch: int | None = None  # prefill batch (= ubatch). None: 256 on CPU (4-7 % faster than 512 on 2 AVX2
                                # cores, docs/benchmarks.md), 512 when the layers are on a GPU (not measured there)
    n_threads: int | None = None
    n_gpu_layers: int | None = None   # None: all when a GPU backend is built in
    flash_attn: bool | None = None    # None: auto when the layers are on a GPU, else off (faster decode on CPU)
    kv_f32: bool | None = None        # None: f32 KV for f32 decoders (exact mode), else f16
    n_seq: int = 1            # parallel sequences (grown per request, see ensure_ctx)
    repack: bool = True       # llama.cpp's repacked CPU weight layouts (use_extra_bufts; docs/benchmarks.md)
    embeddings: bool = False  # a context that can return final hidden states (the aligner; see hidden_states)
    native: bool | None = None  # asrgguf's native q8_0 products (asrgguf/native.py); None: on unless
                                # ASRGGUF_NO_NATIVE=1; f32 decoders (exact mode) keep llama.cpp's products


class Decoder:
    """A loaded qwen3vl decoder GGUF and one llama.cpp context."""

    def __init__(self, path: str | Path, opts: DecoderOptions | None = None):
        L = bindings()

        self.L = L
        opts = opts or DecoderOptions()
        path = str(path)
        kv = self.check_file(path)
        arch = kv.get("general.architecture")
        self.n_pos = 4 if arch == names.TEXT_ARCH else 1
        file_type = int(kv.get("general.file_type", 0))
        quiet_llama_logs()
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        gpu = bool(L.llama_supports_gpu_offload())
        mp.n_gpu_layers = (999 if gpu else 0) if opts.n_gpu_layers is None else opts.n_gpu_layers
        mp.use_extra_bufts = opts.repack
        self.offloaded = gpu and mp.n_gpu_layers != 0   # decoder layers on the GPU
        native_before = self._native_setup(opts, file_type)
        from . import native

        cache = native.cache_begin(path) if self._native_want else None
        try:
            self.model = L.llama_model_load_from_file(path.encode(), mp)
        finally:
            cache_state = native.cache_finish(cache)
        self._native_done(native_before, cache_state)
        if not self.model:
            raise AsrggufError(f"{path}: llama.cpp could not load the decoder"
                               + (f" ({last_llama_error()})" if last_llama_error() else ""))
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_embd = L.llama_model_n_embd_inp(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)
        self.path = path
        self.file_type = file_type
        self.opts = opts
        self.ctx = None
        self.n_batch = min(opts.n_batch or (512 if self.offloaded else 256), opts.n_ctx)
        self._make_ctx(opts.n_ctx, max(1, opts.n_seq))
        self._tok_batch = _Batch(self.n_batch, None, self.n_pos, 1)
        self._emb_batch = _Batch(self.n_batch, self.n_embd, self.n_pos, 1)
        self.im_end = self.token_id("<|im_end|>")
        self.endoftext = self.token_id("<|endoftext|>")

    def _native_setup(self, opts: DecoderOptions, file_type: int):
        """Register asrgguf's native backend before the model loads (q8_0 products; never for f32 exact
        mode or layers on a GPU); a missing or failing backend leaves llama.cpp's products."""
        from . import native

        off = opts.native is False or (opts.native is None and native.disabled())
        q8_0 = file_type == 7   # LLAMA_FTYPE_MOSTLY_Q8_0: the products the backend has kernels for
        want = not off and q8_0 and not self.offloaded
        self.native_info = {"used": False}
        if want:
            st = native.load()
            if not st["loaded"]:
                self.native_info["reason"] = st["reason"]
        else:
            self.native_info["reason"] = ("off" if off else "f32 decoder (exact mode)" if file_type == 0
                                          else f"not a q8_0 decoder (file type {file_type})" if not q8_0
                                          else "decoder layers on a GPU")
        native.accept(want)
        self._native_want = want and native.status()["loaded"]
        return native.stats()

    def _native_done(self, before: dict, cache: str = "off") -> None:
        from . import native

        after = native.stats()
        n = after["tensors"] - before["tensors"]
        if n > 0:
            self.native_info = {"used": True, "isa": native.isa(), "weights": n,
                                "weight_mib": round((after["bytes"] - before["bytes"]) / 2**20, 1),
                                # llama.cpp's mapped pages of those weights, dropped after the repack
                                                "released_mib": round((after["released_bytes"] - before["released_bytes"]) / 2**20, 1),
                                # the repack cache (asrgguf/repack_cache.py): hit, written, rebuilt, off, ...
                                "cache": cache}
        elif native.status()["loaded"] and "reason" not in self.native_info:
            self.native_info["reason"] = "no q8_0 products to take"

    @staticmethod
    def check_file(path) -> dict:
        """Header checks with one-line errors: exists, GGUF, a qwen3vl (or qwen3) decoder."""
        from .gguf_file import check_file, read_kv

        p = Path(path)
        check_file(p, "decoder")
        kv = read_kv(p, {"general.architecture", "general.file_type"})
        arch = kv.get("general.architecture")
        if arch not in (names.TEXT_ARCH, "qwen3"):
            raise AsrggufError(f"{path}: decoder architecture is {arch!r}, expected {names.TEXT_ARCH!r} "
                               f"(a Qwen3-ASR text decoder GGUF)")
        return kv

    def _make_ctx(self, n_ctx_seq: int, n_seq: int) -> None:
        """A context of n_seq sequences with n_ctx_seq positions each (one KV stream per sequence)."""
        L, opts = self.L, self.opts
        old = (self.n_ctx, self.n_seq) if self.ctx else None
        if self.ctx:
            L.llama_free(self.ctx)
        # no context until the new one exists: sizes of 0 make the next ensure_ctx create one again
        self.ctx, self.n_ctx, self.n_seq = None, 0, 0
        cp = L.llama_context_default_params()
        cp.n_ctx = n_ctx_seq * n_seq
        cp.n_batch = cp.n_ubatch = self.n_batch
        # separate streams: each sequence attends over its own cells only (pieces share no prefix)
        cp.n_seq_max, cp.kv_unified = n_seq, False
        threads = opts.n_threads or os.cpu_count() or 1
        cp.n_threads = cp.n_threads_batch = threads
        exact = self.file_type == 0 if opts.kv_f32 is None else opts.kv_f32
        if opts.flash_attn is None:
            cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_AUTO if self.offloaded else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        else:
            cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_ENABLED if opts.flash_attn else L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        if exact:  # f32 decoder: f32 everywhere, no flash attention (both cost ~1e-4..1e-3 relative)
            cp.type_k = cp.type_v = L.GGML_TYPE_F32
            cp.flash_attn_type = L.LLAMA_FLASH_ATTN_TYPE_DISABLED
        cp.no_perf = True
        if opts.embeddings:
            cp.embeddings, cp.pooling_type = True, L.LLAMA_POOLING_TYPE_NONE
        ctx = L.llama_init_from_model(self.model, cp)
        if not ctx:
            msg = (f"{self.path}: llama.cpp could not create a context (n_ctx={cp.n_ctx})"
                   + (f": {last_llama_error()}" if last_llama_error() else ""))
            if old is not None:  # keep the decoder usable at its previous size when that still fits
                with contextlib.suppress(AsrggufError):
                    self._make_ctx(*old)
            raise AsrggufError(msg)
        self.ctx = ctx
        if opts.embeddings:  # off until hidden_states asks: with it on, every row is output (and gets logits)
            L.llama_set_embeddings(self.ctx, False)
        self.n_seq = n_seq
        self.n_ctx = L.llama_n_ctx(self.ctx) // n_seq   # positions per sequence
        self._step = _Batch(n_seq, None, self.n_pos, 1)

    def ensure_ctx(self, n_tokens: int, n_seq: int = 1) -> None:
        """Grow the context (KV cache) when a request needs more positions per sequence, or more
        sequences, than it holds."""
        if n_tokens > self.n_ctx or n_seq > self.n_seq:
            self._make_ctx(-(-max(n_tokens, self.n_ctx) // 256) * 256, max(n_seq, self.n_seq))

    # --- vocabulary
    def tokenize(self, text: str, parse_special: bool = True) -> list[int]:
        """Token ids of `text` (special tokens such as <|im_start|> parsed unless parse_special is False)."""
        L = self.L
        data = text.encode("utf-8")
        buf = (L.llama_token * (len(data) + 8))()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, len(buf), False, parse_special)
        if n < 0:
            raise AsrggufError("internal error: tokenizer buffer too small")
        return list(buf[:n])

    def token_id(self, piece: str) -> int:
        """The id of a single-token piece (a special token); AsrggufError when the vocabulary lacks it."""
        ids = self.tokenize(piece, parse_special=True)
        if len(ids) != 1:
            raise AsrggufError(f"{self.path}: vocabulary has no token {piece!r}")
        return ids[0]

    def piece_bytes(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (control tokens empty unless special)."""
        buf = ctypes.create_string_buffer(256)
        n = self.L.llama_token_to_piece(self.vocab, int(token), buf, 256, 0, special)
        if n < 0:
            buf = ctypes.create_string_buffer(-n)
            n = self.L.llama_token_to_piece(self.vocab, int(token), buf, -n, 0, special)
        return buf.raw[:n]

    def detokenize(self, ids) -> str:
        """Bytes of each token, control tokens dropped (as skip_special_tokens=True)."""
        return b"".join(self.piece_bytes(t) for t in ids).decode("utf-8", errors="replace")

    # --- evaluation
    def clear(self, seq: int = -1) -> None:
        """Forget the KV cache of one sequence (all with seq < 0)."""
        if not self.ctx:
            return
        mem = self.L.llama_get_memory(self.ctx)
        if seq < 0:
            self.L.llama_memory_clear(mem, True)
        else:
            self.L.llama_memory_seq_rm(mem, seq, -1, -1)

    def forget_from(self, seq: int, pos: int) -> None:
        """Drop sequence seq's KV cache from position pos on (a draft's rejected tokens)."""
        self.L.llama_memory_seq_rm(self.L.llama_get_memory(self.ctx), seq, pos, -1)

    def _decode(self, batch: _Batch) -> None:
        if not self.ctx:  # never hand llama.cpp a NULL context
            raise AsrggufError(f"{self.path}: no llama.cpp context (creating one failed earlier)")
        rc = self.L.llama_decode(self.ctx, batch.struct)
        if rc != 0:
            raise AsrggufError(f"llama_decode failed (code {rc}): "
                               + ("the context is full" if rc == 1 else last_llama_error() or "see llama.cpp log"))

    def eval_tokens(self, ids, pos0: int, seq: int = 0, logits_last: bool = False, logits_all: bool = False) -> int:
        """Evaluate token ids at positions pos0..; logits_all (one batch only) keeps every row's logits."""
        ids = np.asarray(ids, np.int32)
        b = self._tok_batch
        if logits_all and len(ids) > self.n_batch:
            raise ValueError("logits_all needs the tokens in one batch")
        for s in range(0, len(ids), self.n_batch):
            part = ids[s:s + self.n_batch]
            b.token[:len(part)] = part
            b.fill(len(part), pos0 + s, seq, logits_last and s + len(part) == len(ids))
            if logits_all:
                b.logits[:len(part)] = 1
            self._decode(b)
        return pos0 + len(ids)

    def eval_embeddings(self, emb: np.ndarray, pos0: int, seq: int = 0, logits_last: bool = False) -> int:
        """Prefill embedding rows (n, n_embd) at positions pos0.. of sequence seq; returns the next position."""
        emb = np.ascontiguousarray(emb, np.float32)
        if emb.ndim != 2 or emb.shape[1] != self.n_embd:
            raise AsrggufError(f"audio embeddings have width {emb.shape[-1]}, the decoder expects {self.n_embd} "
                               f"(the mmproj does not belong to this decoder)")
        b = self._emb_batch
        for s in range(0, len(emb), self.n_batch):
            part = emb[s:s + self.n_batch]
            b.embd[:len(part)] = part
            b.fill(len(part), pos0 + s, seq, logits_last and s + len(part) == len(emb))
            self._decode(b)
        return pos0 + len(emb)

    def hidden_states(self, ids, pos0: int, rows: np.ndarray, seq: int = 0) -> np.ndarray:
        """Evaluate token ids at positions pos0.. and return the final hidden states (after the output
        norm, before the head) of the rows asked for (indices into ids), as (len(rows), n_embd).

        llama.cpp outputs every row of a batch while embeddings are on (and computes its vocabulary
        logits for them too), so they are on only for these tokens, not for the audio before them."""
        if not self.opts.embeddings:
            raise ValueError("hidden_states needs a decoder made with DecoderOptions(embeddings=True)")
        L = self.L
        ids = np.asarray(ids, np.int32)
        rows = np.asarray(rows, np.int64)
        out = np.zeros((len(rows), self.n_embd), np.float32)
        b = self._tok_batch
        L.llama_set_embeddings(self.ctx, True)
        try:
            for s in range(0, len(ids), self.n_batch):
                part = ids[s:s + self.n_batch]
                b.token[:len(part)] = part
                b.fill(len(part), pos0 + s, seq)
                b.logits[:len(part)] = 1
                self._decode(b)
                sel = (rows >= s) & (rows < s + len(part))
                if sel.any():
                    ptr = L.llama_get_embeddings(self.ctx)
                    emb = np.ctypeslib.as_array(ptr, shape=(len(part), self.n_embd))
                    out[sel] = emb[rows[sel] - s]
        finally:
            L.llama_set_embeddings(self.ctx, False)
        return out

    def logits(self, i: int = -1) -> np.ndarray:
        """The logits of output row i of the last decode (-1: the last row), as a float32 array."""
        ptr = self.L.llama_get_logits_ith(self.ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def step(self, tokens, positions, seqs) -> None:
        """One decode step for several sequences at once: token[i] at positions[i] in seqs[i]."""
        b = self._step
        n = len(tokens)
        b.token[:n] = tokens
        b.fill(n, np.asarray(positions, np.int32), np.asarray(seqs, np.int32))
        b.logits[:n] = 1
        self._decode(b)

    def close(self) -> None:
        """Free the llama.cpp context and model (the object is unusable afterwards)."""
        if getattr(self, "ctx", None):
            self.L.llama_free(self.ctx)
            self.ctx = None
        if getattr(self, "model", None):
            self.L.llama_model_free(self.model)
            self.model = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
