#!/usr/bin/env python3
"""Run llama.cpp's own all-ggml Qwen3-ASR pipeline (libmtmd) on one audio file; print one JSON object.

This is the peer to compare asrgguf with: the audio encoder runs in ggml from the mmproj GGUF
(llama.cpp's `qwen3a` graph and its own log-mel preprocessor), driven through llama-cpp-python's
`llama_cpp.mtmd_cpp` binding, and the decoder from the decoder GGUF; nothing of asrgguf's encoder.

    python bench/mtmd_run.py AUDIO --model DECODER.gguf --mmproj MMPROJ.gguf [--bench-tokens N]

Steps (as llama.cpp's mtmd-cli does them, without a sampler chain: greedy argmax):
  load the decoder (llama_model_load_from_file), mtmd_init_from_file (with its warm-up encode),
  an audio bitmap from 16 kHz mono float samples (asrgguf.audio.load by default, so both
  pipelines see the same samples; --audio-loader mtmd uses llama.cpp's own miniaudio decoder),
  mtmd_tokenize of the official prompt with the media marker where the audio goes, then
  mtmd_helper_eval_chunks (it alternates encoder and prefill per 800-frame window), then greedy
  decoding one token per llama_decode until <|im_end|>/<|endoftext|> (any end-of-generation
  token) or --max-new-tokens, or exactly --bench-tokens N tokens ignoring end-of-turn.

Prompt note: for the `qwen3a` projector libmtmd itself wraps every audio in <|audio_start|> ...
<|audio_end|>, so the prompt text carries only the marker between `user\\n` and `<|im_end|>`;
writing the two tokens around the marker as well would double them (see --print-prompt).

Output: {"text", "language", "raw", "token_ids", "timings": {"load", "audio", "preprocess",
"prompt", "decode", "decode_tokens_per_s", "generated_tokens", ...}, "n_prompt_positions",
"n_audio_positions", "prompt_token_ids", "model"}. "prompt" is encoder + prefill together, as
mtmd interleaves them; "preprocess" is mtmd_tokenize (llama.cpp's log-mel), "audio" the file
decode. decode_tokens_per_s counts the tokens after the first (the first comes from the prefill
logits), as asrgguf does.

Figures: docs/benchmarks.md and docs/native.md through bench/compare.py (the mtmd-* contenders); docs/parity.md.
"""
from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import time
from pathlib import Path

_LOG_CB = None
_LOG_TAIL: list[str] = []


def _set_logs(verbose: bool):
    """Route llama.cpp, ggml, mtmd and mtmd-helper logs to stderr (verbose) or a small buffer."""
    global _LOG_CB
    import llama_cpp.llama_cpp as L
    import llama_cpp.mtmd_cpp as M

    @L.llama_log_callback
    def _cb(level, text, user_data):
        if verbose:
            os.write(2, text)
        else:
            _LOG_TAIL.append(text.decode("utf-8", "replace"))
            del _LOG_TAIL[:-80]

    _LOG_CB = _cb  # keep the ctypes callback alive for the life of the process
    L.llama_log_set(_LOG_CB, ctypes.c_void_p())
    M.mtmd_log_set(_LOG_CB, ctypes.c_void_p())
    if hasattr(M, "mtmd_helper_log_set"):
        M.mtmd_helper_log_set(_LOG_CB, ctypes.c_void_p())


def _log_tail(n: int = 12) -> str:
    return "".join(_LOG_TAIL[-n:]).rstrip()


class MtmdError(RuntimeError):
    pass


def _flash_attn_type(L, name: str) -> int:
    return {"auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
            "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED}[name]


def run(audio_path: str, model_path: str, mmproj_path: str, language: str | None = None, context: str = "",
        max_new_tokens: int = 512, bench_tokens: int | None = None, threads: int = 2,
        n_gpu_layers: int | None = None, flash_attn: str = "auto", n_ctx: int | None = None,
        n_batch: int | None = None, audio_loader: str = "asrgguf", warmup: bool = True,
        verbose: bool = False, print_prompt: bool = False) -> dict:
    # llama.cpp's libraries before numpy: a CUDA build made without README's flags crashed in
    # llama_model_load_from_file when loaded after numpy on an H200 (docs/benchmarks.md, "CUDA")
    import llama_cpp.llama_cpp as L
    import llama_cpp.mtmd_cpp as M
    import numpy as np

    # asrgguf's package __init__ is lazy: these imports load neither torch nor asrgguf's encoder
    from asrgguf import audio as audio_mod, languages as languages_mod, parse as parse_mod
    lang = languages_mod.normalize_language(language)
    for p, what in ((audio_path, "audio"), (model_path, "decoder GGUF"), (mmproj_path, "mmproj GGUF")):
        if not Path(p).is_file():
            raise MtmdError(f"{p}: no such {what} file")

    _set_logs(verbose)

    model = ctx = mctx = bitmap = chunks = batch = None
    keep = []  # ctypes buffers that must outlive the calls using them
    try:
        # --- load: decoder, mtmd (audio encoder, warm-up encode), context
        t0 = time.perf_counter()
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        gpu = bool(L.llama_supports_gpu_offload())
        if n_gpu_layers is None:
            n_gpu_layers = 999 if gpu else 0
        mp.n_gpu_layers = n_gpu_layers
        model = L.llama_model_load_from_file(str(model_path).encode(), mp)
        if not model:
            raise MtmdError(f"{model_path}: llama.cpp could not load the decoder\n{_log_tail()}")
        vocab = L.llama_model_get_vocab(model)
        n_vocab = L.llama_vocab_n_tokens(vocab)

        mparams = M.mtmd_context_params_default()
        mparams.use_gpu = bool(gpu and n_gpu_layers != 0)
        mparams.print_timings = bool(verbose)
        mparams.n_threads = threads
        mparams.flash_attn_type = _flash_attn_type(L, flash_attn)
        mparams.warmup = bool(warmup)
        mctx = M.mtmd_init_from_file(str(mmproj_path).encode(), model, mparams)
        if not mctx:
            raise MtmdError(f"{mmproj_path}: mtmd_init_from_file failed\n{_log_tail()}")
        if not M.mtmd_support_audio(mctx):
            raise MtmdError(f"{mmproj_path}: this mmproj has no audio encoder")
        sample_rate = M.mtmd_get_audio_sample_rate(mctx)
        marker = (M.mtmd_get_marker(mctx) or M.mtmd_default_marker()).decode()
        t_load_model = time.perf_counter() - t0

        # --- audio -> bitmap
        t1 = time.perf_counter()
        if audio_loader == "asrgguf":
            if sample_rate != audio_mod.SAMPLE_RATE:
                raise MtmdError(f"mmproj wants {sample_rate} Hz audio, asrgguf.audio gives {audio_mod.SAMPLE_RATE}")
            wav = np.ascontiguousarray(audio_mod.load(audio_path), dtype=np.float32)
            keep.append(wav)
            bitmap = M.mtmd_bitmap_init_from_audio(wav.size, wav.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
            n_samples = int(wav.size)
        else:
            bitmap = M.mtmd_helper_bitmap_init_from_file(mctx, str(audio_path).encode(), False)
            n_samples = int(M.mtmd_bitmap_get_n_bytes(bitmap) // 4) if bitmap else 0
        if not bitmap:
            raise MtmdError(f"{audio_path}: could not make an audio bitmap\n{_log_tail()}")
        if not M.mtmd_bitmap_is_audio(bitmap):
            raise MtmdError(f"{audio_path}: not read as audio")
        t_audio = time.perf_counter() - t1

        # --- prompt -> chunks (text, audio window, audio window, ..., text); log-mel happens here
        prompt = (f"<|im_start|>system\n{context or ''}<|im_end|>\n<|im_start|>user\n{marker}"
                  f"<|im_end|>\n<|im_start|>assistant\n")
        if lang:
            prompt += f"language {lang}<asr_text>"
        t2 = time.perf_counter()
        chunks = M.mtmd_input_chunks_init()
        text_bytes = prompt.encode("utf-8")
        keep.append(text_bytes)
        inp = M.mtmd_input_text(text_bytes, len(text_bytes), False, True)  # add_special off, parse_special on
        bitmaps = (M.mtmd_bitmap_p_ctypes * 1)(bitmap)
        keep += [inp, bitmaps]
        rc = M.mtmd_tokenize(mctx, chunks, ctypes.byref(inp), bitmaps, 1)
        if rc != 0:
            raise MtmdError(f"mtmd_tokenize failed (code {rc})\n{_log_tail()}")
        t_pre = time.perf_counter() - t2
        n_pos = int(M.mtmd_helper_get_n_pos(chunks))
        prompt_ids: list[int] = []
        n_audio = 0
        n_audio_chunks = 0
        for i in range(M.mtmd_input_chunks_size(chunks)):
            ch = M.mtmd_input_chunks_get(chunks, i)
            kind = M.mtmd_input_chunk_get_type(ch)
            if kind == M.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t(0)
                ptr = M.mtmd_input_chunk_get_tokens_text(ch, ctypes.byref(n))
                prompt_ids += [int(ptr[j]) for j in range(n.value)]
            else:
                k = int(M.mtmd_input_chunk_get_n_tokens(ch))
                n_audio += k
                n_audio_chunks += 1
                prompt_ids += [-1] * k  # -1: an audio embedding position
        if print_prompt:
            print(json.dumps({"prompt_text": prompt, "prompt_token_ids": prompt_ids}), file=sys.stderr)

        # --- llama context sized for this request
        limit = bench_tokens if bench_tokens else max_new_tokens
        t3 = time.perf_counter()
        cp = L.llama_context_default_params()
        need = n_pos + limit + 8
        cp.n_ctx = n_ctx or max(512, -(-need // 256) * 256)
        if cp.n_ctx < need:
            raise MtmdError(f"--n-ctx {cp.n_ctx} is smaller than the {need} positions this request needs")
        if n_batch:
            cp.n_batch = n_batch
        cp.n_batch = min(cp.n_batch, cp.n_ctx)
        cp.n_ubatch = min(cp.n_ubatch, cp.n_batch)
        cp.n_threads = cp.n_threads_batch = threads
        cp.flash_attn_type = _flash_attn_type(L, flash_attn)
        cp.no_perf = not verbose
        ctx = L.llama_init_from_model(model, cp)
        if not ctx:
            raise MtmdError(f"llama.cpp could not create a context (n_ctx={cp.n_ctx})\n{_log_tail()}")
        t_ctx = time.perf_counter() - t3

        # --- encoder + prefill, interleaved per audio window by the helper
        t4 = time.perf_counter()
        new_n_past = L.llama_pos(0)
        rc = M.mtmd_helper_eval_chunks(mctx, ctx, chunks, 0, 0, cp.n_batch, True, ctypes.byref(new_n_past))
        if rc != 0:
            raise MtmdError(f"mtmd_helper_eval_chunks failed (code {rc})\n{_log_tail()}")
        n_past = int(new_n_past.value)
        logits_ptr = L.llama_get_logits_ith(ctx, -1)
        logits = np.ctypeslib.as_array(logits_ptr, shape=(n_vocab,))
        t_prompt = time.perf_counter() - t4

        # --- greedy decoding, one token per llama_decode
        batch = L.llama_batch_init(1, 0, 1)
        ids: list[int] = []
        t5 = time.perf_counter()
        while len(ids) < limit:
            tok = int(np.argmax(logits))
            if not bench_tokens and L.llama_vocab_is_eog(vocab, tok):
                break
            ids.append(tok)
            if len(ids) >= limit:
                break
            batch.n_tokens = 1
            batch.token[0] = tok
            batch.pos[0] = n_past
            batch.n_seq_id[0] = 1
            batch.seq_id[0][0] = 0
            batch.logits[0] = 1
            rc = L.llama_decode(ctx, batch)
            if rc != 0:
                raise MtmdError(f"llama_decode failed (code {rc}) at position {n_past}\n{_log_tail()}")
            n_past += 1
            logits = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, -1), shape=(n_vocab,))
        t_decode = time.perf_counter() - t5

        def piece(tok: int) -> bytes:
            buf = ctypes.create_string_buffer(256)
            n = L.llama_token_to_piece(vocab, tok, buf, 256, 0, False)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = L.llama_token_to_piece(vocab, tok, buf, -n, 0, False)
            return buf.raw[:n]

        raw = b"".join(piece(t) for t in ids).decode("utf-8", errors="replace")
        out_lang, text = parse_mod.parse_asr_output(raw, lang)
        n_dec = max(0, len(ids) - 1)
        return {
            "text": text,
            "language": out_lang,
            "raw": raw,
            "token_ids": ids,
            "timings": {
                "load": t_load_model + t_ctx,
                "audio": t_audio,
                "preprocess": t_pre,
                "prompt": t_prompt,
                "decode": t_decode,
                "decode_tokens_per_s": n_dec / t_decode if n_dec and t_decode > 0 else 0.0,
                "generated_tokens": len(ids),
                "audio_seconds": n_samples / float(sample_rate),
            },
            "n_prompt_positions": n_pos,
            "n_audio_positions": n_audio,
            "n_audio_chunks": n_audio_chunks,
            "prompt_token_ids": prompt_ids,
            "model": {"decoder": str(model_path), "mmproj": str(mmproj_path), "threads": threads,
                      "flash_attn": flash_attn, "n_ctx": int(cp.n_ctx), "n_batch": int(cp.n_batch),
                      "n_ubatch": int(cp.n_ubatch), "audio_loader": audio_loader,
                      "gpu_layers": n_gpu_layers},
        }
    finally:
        if batch is not None:
            L.llama_batch_free(batch)
        if chunks:
            M.mtmd_input_chunks_free(chunks)
        if bitmap:
            M.mtmd_bitmap_free(bitmap)
        if mctx:
            M.mtmd_free(mctx)
        if ctx:
            L.llama_free(ctx)
        if model:
            L.llama_model_free(model)
        del keep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("audio")
    ap.add_argument("--model", "-m", required=True, help="decoder GGUF (qwen3vl)")
    ap.add_argument("--mmproj", required=True, help="audio encoder GGUF (qwen3a mmproj)")
    ap.add_argument("--language", default=None, help="force the language (name or ISO code); default: auto")
    ap.add_argument("--context", default="", help="system prompt context text")
    ap.add_argument("--max-new-tokens", type=int, default=512)
    ap.add_argument("--bench-tokens", type=int, default=None,
                    help="generate exactly N tokens, ignoring end-of-turn (benchmarks, random weights)")
    ap.add_argument("--threads", "-t", type=int, default=2)
    ap.add_argument("--n-gpu-layers", type=int, default=None, help="default: all when a GPU backend is built in")
    ap.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto",
                    help="llama.cpp's default is auto (decoder and encoder)")
    ap.add_argument("--n-ctx", type=int, default=None, help="default: what the request needs, rounded up")
    ap.add_argument("--n-batch", type=int, default=None, help="default: llama.cpp's (2048; ubatch 512)")
    ap.add_argument("--audio-loader", choices=["asrgguf", "mtmd"], default="asrgguf",
                    help="asrgguf: asrgguf.audio.load (same samples as asrgguf and the official package); "
                         "mtmd: llama.cpp's own decoder (mtmd_helper_bitmap_init_from_file)")
    ap.add_argument("--no-warmup", action="store_true", help="skip mtmd's warm-up encode at load")
    ap.add_argument("--print-prompt", action="store_true", help="print the prompt's token ids to stderr")
    ap.add_argument("--verbose", "-v", action="store_true", help="show llama.cpp/mtmd logs on stderr")
    a = ap.parse_args(argv)
    if a.bench_tokens is not None and a.bench_tokens < 1:
        ap.error("--bench-tokens must be >= 1")
    if a.max_new_tokens < 1:
        ap.error("--max-new-tokens must be >= 1")
    try:
        res = run(a.audio, a.model, a.mmproj, a.language, a.context, a.max_new_tokens, a.bench_tokens,
                  a.threads, a.n_gpu_layers, a.flash_attn, a.n_ctx, a.n_batch, a.audio_loader,
                  not a.no_warmup, a.verbose, a.print_prompt)
    except Exception as e:  # noqa: BLE001 - one line to stderr, exit 1
        if type(e).__name__ == "AsrggufError" or isinstance(e, MtmdError):
            print(f"mtmd_run: error: {e}", file=sys.stderr)
            return 1
        raise
    res["audio"] = str(a.audio)
    print(json.dumps(res, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
