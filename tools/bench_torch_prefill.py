"""Cost of a candidate not taken: the decoder's prefill done in torch (float32) instead of llama.cpp.

Times, in one process and alternating, llama.cpp's prefill of N embedding positions (asrgguf's
Decoder, as `asrgguf run` does it) against the same layers run in torch: each layer's q8_0 weights
dequantized to float32 when it is reached, then RMSNorm, q/k/v with q/k norms, RoPE, causal GQA
attention (torch's scaled_dot_product_attention) and the SwiGLU MLP. Random inputs: this measures
cost only; the torch values are not checked against llama.cpp's and nothing writes them into
llama.cpp's KV cache (docs/benchmarks.md says why the change was not built). Needs torch 2.5 or later
(`enable_gqa`).

    python tools/bench_torch_prefill.py Qwen3-ASR-0.6B-q8_0.gguf --positions 795 --rounds 2
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from asrgguf.gguf_file import field, open_gguf, tensor_to_torch
from bench_decoder import run_once  # tools/: the llama.cpp side, as bench_decoder measures it


def torch_prefill(reader, emb: np.ndarray) -> dict:
    arch = field(reader, "general.architecture")
    heads, kv_heads = field(reader, f"{arch}.attention.head_count"), field(reader, f"{arch}.attention.head_count_kv")
    hd, eps = field(reader, f"{arch}.attention.key_length"), field(reader, f"{arch}.attention.layer_norm_rms_epsilon")
    theta, n_layer = field(reader, f"{arch}.rope.freq_base"), field(reader, f"{arch}.block_count")
    tensors = {t.name: t for t in reader.tensors}
    n = len(emb)
    inv = theta ** -(torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.outer(torch.arange(n, dtype=torch.float32), inv)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)

    def rope(t):  # NEOX halves, as Qwen3's (equal M-RoPE sections for audio-only input)
        return t * cos + torch.cat([-t[..., hd // 2:], t[..., :hd // 2]], -1) * sin

    def rms(t, w):
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + eps) * w

    t_deq = t_att = 0.0
    t0 = time.perf_counter()
    x = torch.from_numpy(emb)
    with torch.inference_mode():
        for i in range(n_layer):
            a = time.perf_counter()
            w = {k.split(".")[2]: tensor_to_torch(t) for k, t in tensors.items() if k.startswith(f"blk.{i}.")}
            t_deq += time.perf_counter() - a
            h = rms(x, w["attn_norm"])
            q = rope(rms((h @ w["attn_q"].T).view(n, heads, hd), w["attn_q_norm"]).transpose(0, 1))
            k = rope(rms((h @ w["attn_k"].T).view(n, kv_heads, hd), w["attn_k_norm"]).transpose(0, 1))
            v = (h @ w["attn_v"].T).view(n, kv_heads, hd).transpose(0, 1)
            a = time.perf_counter()
            # 4-D (batch of one): torch's fused CPU kernel; with 3-D inputs it took the slower generic path
            o = F.scaled_dot_product_attention(q[None], k[None], v[None], is_causal=True, enable_gqa=True)[0]
            t_att += time.perf_counter() - a
            x = x + o.transpose(0, 1).reshape(n, heads * hd) @ w["attn_output"].T
            h = rms(x, w["ffn_norm"])
            x = x + (F.silu(h @ w["ffn_gate"].T) * (h @ w["ffn_up"].T)) @ w["ffn_down"].T
    return {"total": time.perf_counter() - t0, "dequant": t_deq, "attention": t_att}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("gguf")
    ap.add_argument("--positions", type=int, default=795, help="prefill length (60 s of audio + prompt: 795)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    reader = open_gguf(a.gguf, "decoder")
    width = field(reader, f"{field(reader, 'general.architecture')}.embedding_length")
    emb = (np.random.default_rng(0).standard_normal((a.positions, width)) * 0.02).astype(np.float32)
    print("| round | llama.cpp prefill (s) | torch prefill (s) | of it: q8_0 → f32 (s) | of it: attention (s) |")
    print("|---:|---:|---:|---:|---:|")
    for r in range(a.rounds):
        ll = run_once(a.gguf, True, 256, "f16", False, a.positions, 0, a.threads)["prefill"]  # asrgguf's CPU defaults
        tp = torch_prefill(reader, emb)
        print(f"| {r + 1} | {ll:.2f} | {tp['total']:.2f} | {tp['dequant']:.2f} | {tp['attention']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
