"""The Qwen3-ASR audio tower in PyTorch, run windowed as in training, with weights from an mmproj GGUF.

Same computation as the official `Qwen3ASRAudioEncoder`: mel features cut into chunks of
2*n_window frames, three stride-2 3x3 convs with GELU, conv_out, sinusoidal positions restarting in
every chunk, pre-LN transformer layers whose attention stays inside windows of n_window_infer mel
frames (13 * n_window_infer / (2*n_window) encoder frames), ln_post, proj1, GELU, proj2.
Windows are computed as one batch (no n x n mask): time and memory grow linearly with the audio.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import gguf_names as names
from .errors import AsrggufError
from .mapped_pages import MappedFile
from .mmproj import EncoderParams, params_from_gguf  # noqa: F401 (the encoder's sizes, read without torch)


def output_length(n_mel_frames: int, chunk: int = 100) -> int:
    """Encoder frames for n mel frames (the official `_get_feat_extract_output_lengths`)."""
    rest = n_mel_frames % chunk
    r = (rest - 1) // 2 + 1
    return ((r - 1) // 2 + 1 - 1) // 2 + 1 + (n_mel_frames // chunk) * 13


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> torch.Tensor:
    """The audio tower's sinusoidal positions, as the official SinusoidsPositionEmbedding."""
    inc = np.log(max_timescale) / (channels // 2 - 1)
    inv = torch.exp(-inc * torch.arange(channels // 2).float())
    t = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(t), torch.cos(t)], dim=1)


def _conv_len(n: int) -> int:
    for _ in range(3):
        n = (n - 1) // 2 + 1
    return n


class _Linear(nn.Linear):
    """A Linear whose weight may be stored narrower (f16 from the file) than it computes (f32).

    The upcast is exact, costs ~0.2 s per 60 s of audio at the 0.6B shape, and halves the
    encoder's resident weights on CPU (~370 MB at 0.6B); with the map's pages dropped once each
    module has run (AudioEncoder.map_pages) about one layer of them is resident at a time.
    """

    def forward(self, x):
        w = self.weight if self.weight.dtype == x.dtype else self.weight.to(x.dtype)
        return F.linear(x, w, self.bias)


class _Attention(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (_Linear(d, d) for _ in range(4))

    def forward(self, x: torch.Tensor, window: int) -> torch.Tensor:
        """(T, d) -> (T, d), each row attending to the rows of its `window`-row window only: the whole
        windows as one batch, the last (shorter) one on its own, so no row is padded (as the official
        block-diagonal mask over the T rows, without computing the masked-out blocks)."""
        T, d = x.shape
        hd = d // self.heads
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        outs = []
        n_full = T // window * window
        for a, b in ((0, n_full), (n_full, T)):
            if b > a:
                w = min(window, b - a)

                def split(t):
                    return t[a:b].view((b - a) // w, w, self.heads, hd).transpose(1, 2)
                o = F.scaled_dot_product_attention(split(q), split(k), split(v))
                outs.append(o.transpose(1, 2).reshape(b - a, d))
        return self.out_proj(outs[0] if len(outs) == 1 else torch.cat(outs))


class _Layer(nn.Module):
    def __init__(self, p: EncoderParams):
        super().__init__()
        d = p.d_model
        self.self_attn = _Attention(d, p.encoder_attention_heads)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.final_layer_norm = nn.LayerNorm(d)
        self.fc1 = _Linear(d, p.encoder_ffn_dim)
        self.fc2 = _Linear(p.encoder_ffn_dim, d)

    def forward(self, x, window: int):
        x = x + self.self_attn(self.self_attn_layer_norm(x), window)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))


class AudioEncoder(nn.Module):
    """Parameter names are the official ones (without `thinker.audio_tower.`)."""

    CONV_BATCH = 8  # chunks per conv batch: bounds the conv activations (about 6 MB a chunk)

    def __init__(self, p: EncoderParams):
        super().__init__()
        self.params = p
        C = p.downsample_hidden_size
        self.conv2d1 = nn.Conv2d(1, C, 3, 2, padding=1)
        self.conv2d2 = nn.Conv2d(C, C, 3, 2, padding=1)
        self.conv2d3 = nn.Conv2d(C, C, 3, 2, padding=1)
        f = (((p.num_mel_bins + 1) // 2 + 1) // 2 + 1) // 2
        self.conv_out = _Linear(C * f, p.d_model, bias=False)
        self.layers = nn.ModuleList(_Layer(p) for _ in range(p.encoder_layers))
        self.ln_post = nn.LayerNorm(p.d_model)
        self.proj1 = _Linear(p.d_model, p.d_model)
        self.proj2 = _Linear(p.d_model, p.output_dim)
        self.register_buffer("positions", sinusoids(p.max_source_positions, p.d_model), persistent=False)
        self.pages = None   # MappedFile of the mmproj when the linear weights are used from its map
        self._spans: dict[str, list] = {}   # module name -> its weights' page spans in that map

    def map_pages(self, pages) -> None:
        """Use the weights from this file map and drop each module's pages once it has run in a pass
        (resident weights: about one layer, not all); `pages` a `mapped_pages.MappedFile`."""
        self.pages, self._spans = pages, {}
        for name, mod in self.named_modules():
            if isinstance(mod, _Linear) and mod.weight.dtype == torch.float16:
                span = pages.span(mod.weight.data_ptr(), mod.weight.numel() * mod.weight.element_size())
                if span:   # grouped by what runs as one step: "layers.3", "conv_out", "proj1"
                    parts = name.split(".")
                    group = ".".join(parts[:2]) if parts[0] == "layers" else parts[0]
                    self._spans.setdefault(group, []).append(span)
        pages.release_all()   # the load's reads (conv weights copied to f32, header) are not needed again

    def _release(self, *names: str) -> None:
        if self.pages is not None:
            for n in names:
                self.pages.release(self._spans.get(n, ()))

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (linear weights may be stored in float16 and upcast per use)."""
        return self.ln_post.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.proj2.weight.device

    def _frontend(self, feats: torch.Tensor) -> torch.Tensor:
        """(n_mels, L) -> (T, d_model): per-chunk convs, conv_out and positions, valid frames only."""
        cf = self.params.chunk_frames
        L = feats.shape[1]
        n_full, tail = divmod(L, cf)
        n_chunks = n_full + (1 if tail else 0)
        # as the official pad_sequence: the tail chunk is zero-padded to the longest chunk
        width = cf if n_full else tail
        padded = feats.new_zeros((n_chunks * width, feats.shape[0]))
        padded[:L] = feats.T
        chunks = padded.view(n_chunks, width, -1).transpose(1, 2).unsqueeze(1)  # (n, 1, mel, width)
        valid = [13 if n_full and i < n_full else _conv_len(tail) for i in range(n_chunks)]
        if not n_full:
            valid = [_conv_len(tail)]
        outs = []
        fmt = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format  # ~10% faster on CPU
        for start in range(0, n_chunks, self.CONV_BATCH):
            x = chunks[start:start + self.CONV_BATCH].contiguous(memory_format=fmt)
            x = F.gelu(self.conv2d1(x))
            x = F.gelu(self.conv2d2(x))
            x = F.gelu(self.conv2d3(x))
            b, c, f, t = x.shape
            x = self.conv_out(x.permute(0, 3, 1, 2).reshape(b, t, c * f))
            x = x + self.positions[:t].to(x.dtype)
            for j in range(b):
                outs.append(x[j, :valid[start + j]])
        self._release("conv_out")
        return torch.cat(outs, dim=0)

    def window_frames(self) -> int:
        p = self.params
        return 13 * (p.n_window_infer // p.chunk_frames)

    @torch.inference_mode()
    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Log-mel (n_mels, L) -> audio embeddings (output_length(L), output_dim)."""
        feats = feats.to(self.device, self.dtype)
        x = self._frontend(feats)
        W = self.window_frames()
        for i, layer in enumerate(self.layers):   # (T, d) throughout: no padded rows
            x = layer(x, W)
            self._release(f"layers.{i}")
        x = self.proj2(F.gelu(self.proj1(self.ln_post(x))))
        self._release("proj1", "proj2")
        return x


# --- loading

@contextlib.contextmanager
def _no_init():
    """Build modules with uninitialised storage: the weights come from a file right after.

    (Building on the meta device would do the same, but pulls in torch's decomposition
    machinery: 2.5 s of imports.)
    """
    mods = (nn.Linear, nn.Conv2d, nn.LayerNorm)
    saved = [m.reset_parameters for m in mods]
    for m in mods:
        m.reset_parameters = lambda self: None
    try:
        yield
    finally:
        for m, f in zip(mods, saved):
            m.reset_parameters = f

def load_from_gguf(path: str | Path, device="cpu", dtype=torch.float32) -> AudioEncoder:
    """The audio encoder from an mmproj GGUF (f16 linear weights used from the file map on CPU float32)."""
    from .gguf_file import open_gguf, tensor_to_torch

    import gguf

    reader = open_gguf(path, "audio encoder (mmproj)")
    p = params_from_gguf(reader)
    keep_f16 = torch.device(device).type == "cpu" and dtype == torch.float32
    with _no_init():
        enc = AudioEncoder(p)
    state = {}
    for t in reader.tensors:
        if t.name == names.AUDIO_POSITION:
            continue
        try:
            key = names.audio_from_gguf(t.name)
        except KeyError:
            continue
        narrow = (keep_f16 and t.tensor_type == gguf.GGMLQuantizationType.F16 and len(t.shape) == 2
                  and not key.startswith("conv2d"))
        try:
            x = tensor_to_torch(t, torch.float16 if narrow else dtype, copy=not narrow)  # narrow: used from the map
        except (ValueError, TypeError, NotImplementedError, RuntimeError) as e:
            raise AsrggufError(f"{path}: corrupt audio encoder tensor {t.name!r} ({type(e).__name__})") from None
        state[key] = x.reshape(-1) if key.startswith("conv2d") and key.endswith(".bias") else x
    enc = _finish(enc, state, device, dtype, str(path))
    if keep_f16 and os.environ.get("ASRGGUF_ENCODER_KEEP_PAGES", "") in ("", "0"):
        enc.map_pages(MappedFile(reader.data))
    return enc


def load_from_checkpoint(ck, device="cpu", dtype=torch.float32) -> AudioEncoder:
    """The audio encoder straight from a `Checkpoint` (safetensors), for checks against the GGUF path."""
    a, pre = ck.audio_config, ck.preprocessor()
    p = EncoderParams(num_mel_bins=a["num_mel_bins"], d_model=a["d_model"], encoder_layers=a["encoder_layers"],
                      encoder_attention_heads=a["encoder_attention_heads"], encoder_ffn_dim=a["encoder_ffn_dim"],
                      output_dim=a["output_dim"], downsample_hidden_size=a["downsample_hidden_size"],
                      n_window=a.get("n_window", 50), n_window_infer=a.get("n_window_infer", 800),
                      max_source_positions=a.get("max_source_positions", 1500),
                      sample_rate=pre.get("sampling_rate", 16000), hop_length=pre.get("hop_length", 160),
                      n_fft=pre.get("n_fft", 400))
    with _no_init():
        enc = AudioEncoder(p)
    state = {name: torch.from_numpy(ck.read("audio", name)) for kind, name in ck.tensor_keys if kind == "audio"}
    return _finish(enc, state, device, dtype, str(ck.path))


def _finish(enc: AudioEncoder, state: dict, device, dtype, source: str) -> AudioEncoder:
    expected = {k: v.shape for k, v in enc.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    if missing:
        raise AsrggufError(f"{source}: audio encoder tensor '{missing[0]}' is missing")
    for k, v in state.items():
        if k in expected and tuple(v.shape) != tuple(expected[k]):
            raise AsrggufError(f"{source}: audio encoder tensor '{k}' has shape {list(v.shape)}, "
                               f"expected {list(expected[k])}")
    enc.load_state_dict({k: v for k, v in state.items() if k in expected}, assign=True)
    enc.positions = sinusoids(enc.params.max_source_positions, enc.params.d_model)
    for name, t in list(enc.named_parameters()) + list(enc.named_buffers()):
        mod_name, _, attr = name.rpartition(".")
        mod = enc.get_submodule(mod_name) if mod_name else enc
        keep = isinstance(mod, _Linear) and attr == "weight" and t.dtype == torch.float16 and dtype == torch.float32
        target = t.to(device=device, dtype=t.dtype if keep else dtype)
        if isinstance(t, nn.Parameter):
            setattr(mod, attr, nn.Parameter(target, requires_grad=False))
        else:
            setattr(mod, attr, target)
    enc = enc.eval()
    if enc.device.type == "cpu":
        for conv in (enc.conv2d1, enc.conv2d2, enc.conv2d3):
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
    return enc
