"""`Transcriber`: audio -> log-mel -> PyTorch encoder -> prompt + embeddings -> llama.cpp -> text."""
from __future__ import annotations

import contextlib
import glob
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from . import audio as audio_mod
from .decoder import Decoder, DecoderOptions
from .errors import AsrggufError
from .languages import normalize_language
from .output import parse_asr_output
from .prompt import build_prompt

if TYPE_CHECKING:  # torch is imported while llama.cpp loads the decoder (see from_gguf)
    import torch

    from .encoder import AudioEncoder

DEFAULT_MAX_NEW_TOKENS = 512  # the official wrapper's default


@dataclass
class Result:
    language: str
    text: str
    raw: str
    token_ids: list[int]
    timings: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def pick_device(device: str = "auto") -> "torch.device":
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


_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16",
           "f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def pick_dtype(dtype: str, device: "torch.device") -> "torch.dtype":
    import torch

    dtype = (dtype or "auto").lower()
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else torch.float16
    if dtype not in _DTYPES:
        raise AsrggufError(f"unknown --dtype {dtype!r} (auto, float32, float16, bfloat16)")
    return getattr(torch, _DTYPES[dtype])


def find_mmproj(decoder_path: str | Path) -> Path:
    """The mmproj-*.gguf beside a decoder; the one naming the same model when there are several."""
    dec = Path(decoder_path)
    found = sorted(Path(p) for p in glob.glob(str(dec.parent / "mmproj-*.gguf")))
    if not found:
        raise AsrggufError(f"{dec}: no mmproj-*.gguf beside the decoder; pass --mmproj")
    if len(found) == 1:
        return found[0]
    stem = dec.name[:-len(".gguf")] if dec.name.endswith(".gguf") else dec.name
    base = stem.rsplit("-", 1)[0]
    same = [p for p in found if p.name.startswith(f"mmproj-{base}-")] or found
    for pref in ("f16", "f32", "bf16", "q8_0"):
        for p in same:
            if p.name.endswith(f"-{pref}.gguf"):
                return p
    return same[0]


_GPU_BACKENDS = ("cuda", "metal", "vulkan", "hip", "musa", "sycl", "opencl", "cann")


def llama_gpu_backends(lib_dir: str | Path | None = None) -> list[str]:
    """GPU backends of the installed llama.cpp build, read from its library names (nothing is loaded)."""
    if lib_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("llama_cpp")
        if spec is None or not spec.submodule_search_locations:
            return []
        lib_dir = Path(list(spec.submodule_search_locations)[0]) / "lib"
    names = [p.name.lower() for p in Path(lib_dir).glob("*ggml-*")]
    return [b for b in _GPU_BACKENDS if any(f"ggml-{b}" in n for n in names)]


class Transcriber:
    """Qwen3-ASR with a PyTorch encoder and a llama.cpp GGUF decoder."""

    def __init__(self, encoder: "AudioEncoder", decoder: Decoder, model_info: dict, load_s: float = 0.0,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS):
        from .features import LogMel

        self.encoder = encoder
        self.decoder = decoder
        p = encoder.params
        self.features = LogMel(p.num_mel_bins, p.n_fft, p.hop_length, p.sample_rate, device=encoder.device)
        self.model_info = model_info
        self.load_s = load_s
        self.max_new_tokens = max_new_tokens
        if p.output_dim != decoder.n_embd:
            raise AsrggufError(f"{model_info.get('mmproj')}: encoder output width {p.output_dim} does not match "
                               f"the decoder's {decoder.n_embd} ({model_info.get('decoder')}): not a matching pair")
        self.stop_ids = {decoder.im_end, decoder.endoftext}
        self._audio_pad = decoder.token_id("<|audio_pad|>")

    @classmethod
    def from_gguf(cls, decoder: str | Path, mmproj: str | Path | None = None, device: str = "auto",
                  dtype: str = "auto", n_gpu_layers: int | None = None, threads: int | None = None,
                  max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, n_ctx: int = 512,
                  flash_attn: bool | None = None) -> "Transcriber":
        t0 = time.perf_counter()
        opts = DecoderOptions(n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers, flash_attn=flash_attn)
        Decoder.check_file(decoder)  # header errors first, before anything slow

        def load_encoder():
            import torch

            from .encoder import load_from_gguf

            dev = pick_device(device)
            dt = pick_dtype(dtype, dev)
            if threads:
                torch.set_num_threads(threads)
            mm = Path(mmproj) if mmproj else find_mmproj(decoder)
            return load_from_gguf(mm, device=dev, dtype=dt), mm, dev, dt

        if llama_gpu_backends():
            # one after the other on GPU builds: on an H200 the two CUDA start-ups side by side loaded
            # about 0.8 s slower than in turn (docs/benchmarks.md, "CUDA")
            enc, mm, dev, dt = load_encoder()
            dec = Decoder(decoder, opts)
        else:
            # CPU build: llama.cpp loads (and repacks) the decoder in a thread (ctypes releases the GIL)
            # while this thread imports torch and loads the encoder: about a second less start-up on 2 cores
            with ThreadPoolExecutor(1) as pool:
                fut = pool.submit(Decoder, decoder, opts)
                try:
                    enc, mm, dev, dt = load_encoder()
                except BaseException:
                    with contextlib.suppress(BaseException):
                        fut.result().close()
                    raise
                dec = fut.result()
        info = {"decoder": str(decoder), "mmproj": str(mm), "encoder_device": dev.type,
                "encoder_dtype": str(dt).replace("torch.", ""), "decoder_device": "gpu" if dec.offloaded else "cpu",
                "native": dec.native_info}
        return cls(enc, dec, info, time.perf_counter() - t0, max_new_tokens)

    @classmethod
    def from_pretrained(cls, model_dir: str | Path, outtype: str = "q8_0", cache_dir: str | Path | None = None,
                        **kw) -> "Transcriber":
        """Quantize a Hugging Face checkpoint once into a cache, then load the GGUF pair from there.

        The name "demo" loads the built-in demo model's packaged pair (a directory named demo: "./demo")."""
        from . import demo
        from .convert import output_paths, quantize_checkpoint

        if isinstance(model_dir, str) and model_dir == demo.NAME:  # packaged: nothing to quantize or cache
            if outtype != "q8_0":
                raise AsrggufError(f"the demo model ships as q8_0 only; for {outtype}: "
                                   f"asrgguf quantize {demo.CHECKPOINT} --outtype {outtype}")
            return cls.from_gguf(demo.DECODER, demo.MMPROJ, **kw)
        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise AsrggufError(f"{model_dir}: no such checkpoint directory")
        cache = Path(cache_dir) if cache_dir else default_cache_dir() / model_dir.resolve().name
        dec, mm = output_paths(model_dir, outtype, cache, "f32" if outtype == "f32" else "f16")
        stamp = cache / f".source-{outtype}"
        src_id = _checkpoint_stamp(model_dir)
        if not (dec.exists() and mm.exists() and stamp.exists() and stamp.read_text() == src_id):
            quantize_checkpoint(model_dir, outtype, cache, mmproj_type="f32" if outtype == "f32" else "f16")
            stamp.write_text(src_id)
        return cls.from_gguf(dec, mm, **kw)

    # --- stages
    def encode(self, wav: np.ndarray) -> tuple[np.ndarray, dict]:
        import torch

        from .encoder import output_length

        t0 = time.perf_counter()
        feats = self.features(wav)
        if self.encoder.device.type != "cpu":
            torch.cuda.synchronize() if self.encoder.device.type == "cuda" else None
        t1 = time.perf_counter()
        emb = self.encoder(feats).float().cpu().numpy()
        t2 = time.perf_counter()
        assert emb.shape[0] == output_length(feats.shape[1], self.encoder.params.chunk_frames)
        return emb, {"features": t1 - t0, "encoder": t2 - t1}

    def generate(self, emb: np.ndarray, language: str | None, context: str, max_new_tokens: int,
                 bench_tokens: int | None = None, loop_guard: bool = True) -> tuple[list[int], dict]:
        """Greedy ids after the prompt. loop_guard stops a generation stuck repeating an n-gram."""
        ids, timings = self.generate_many([emb], language, context, max_new_tokens, bench_tokens, loop_guard)
        timings["loop_stopped"] = timings.pop("loops_stopped")[0]
        return ids[0], timings

    def generate_many(self, embs: list[np.ndarray], language: str | None, context: str, max_new_tokens: int,
                      bench_tokens: int | None = None, loop_guard: bool = True) -> tuple[list[list[int]], dict]:
        """Greedy ids for several audio pieces at once, each in its own llama.cpp sequence.

        Each prompt is prefilled into its sequence; then every unfinished sequence advances one token
        per `llama_decode` call (one batch row each), so the decoder weights are read once per step
        for all of them. The ids of each sequence are those `generate` gives for it alone (up to the
        arithmetic of a batched matrix product).
        """
        dec = self.decoder
        prompts = [build_prompt(dec.tokenize, len(e), context, language) for e in embs]
        limit = bench_tokens if bench_tokens else max_new_tokens
        dec.ensure_ctx(max(len(p) for p in prompts) + limit, len(embs))
        dec.clear()
        t0 = time.perf_counter()
        nxt, pos = [], []
        for s, (prompt, emb) in enumerate(zip(prompts, embs)):
            q = dec.eval_tokens(prompt.prefix, 0, seq=s)
            q = dec.eval_embeddings(emb, q, seq=s, logits_last=not prompt.suffix)
            if prompt.suffix:
                q = dec.eval_tokens(prompt.suffix, q, seq=s, logits_last=True)
            nxt.append(int(np.argmax(dec.logits(-1))))
            pos.append(q)
        t1 = time.perf_counter()
        ids: list[list[int]] = [[] for _ in embs]
        looped = [False] * len(embs)
        active = list(range(len(embs)))
        while active:
            going = []
            for s in active:
                tok = nxt[s]
                if not bench_tokens and tok in self.stop_ids:
                    continue
                ids[s].append(tok)
                if len(ids[s]) >= limit:
                    continue
                if loop_guard and not bench_tokens and is_looping(ids[s]):
                    looped[s] = True
                    continue
                going.append(s)
            active = going
            if not active:
                break
            dec.step([nxt[s] for s in active], [pos[s] for s in active], active)
            for row, s in enumerate(active):
                pos[s] += 1
                nxt[s] = int(np.argmax(dec.logits(row)))
        t2 = time.perf_counter()
        n_dec = sum(max(0, len(x) - 1) for x in ids)
        return ids, {"prefill": t1 - t0, "decode": t2 - t1, "prompt_tokens": sum(len(p) for p in prompts),
                     "loops_stopped": looped, "generated_tokens": sum(len(x) for x in ids),
                     "decode_tokens_per_s": (n_dec / (t2 - t1)) if t2 > t1 and n_dec else 0.0}

    def transcribe(self, audio, language: str | None = None, context: str = "",
                   max_new_tokens: int | None = None, bench_tokens: int | None = None,
                   loop_guard: bool = True) -> Result:
        """audio: a file path, a 16 kHz mono float32 array, or (array, sample_rate)."""
        lang = normalize_language(language)
        t0 = time.perf_counter()
        if isinstance(audio, (str, os.PathLike)):
            wav = audio_mod.load(audio)
        elif isinstance(audio, tuple):
            wav = audio_mod.prepare(np.asarray(audio[0]), int(audio[1]))
        else:
            wav = audio_mod.prepare(np.asarray(audio), audio_mod.SAMPLE_RATE)
        t_audio = time.perf_counter() - t0
        if wav.size <= self.encoder.params.n_fft // 2:
            raise AsrggufError(f"{audio if isinstance(audio, (str, os.PathLike)) else 'audio'}: "
                               f"audio is too short ({wav.size} samples at 16 kHz)")
        emb, t_enc = self.encode(wav)
        ids, t_dec = self.generate(emb, lang, context, max_new_tokens or self.max_new_tokens, bench_tokens,
                                   loop_guard)
        raw = self.decoder.detokenize(ids)
        out_lang, text = parse_asr_output(raw, lang)
        timings = {"load": self.load_s, "audio": t_audio, **t_enc, **t_dec, "audio_seconds": wav.size / 16000}
        return Result(language=out_lang, text=text, raw=raw, token_ids=ids, timings=timings,
                      model=dict(self.model_info))

    def close(self):
        self.decoder.close()


LOOP_MIN_REPEATS = 8     # an n-gram repeated this often in a row ...
LOOP_MIN_TOKENS = 32     # ... and covering at least this many tokens is a loop
LOOP_MAX_NGRAM = 16


def is_looping(ids: list[int]) -> bool:
    """True when the generation ends in one n-gram (n <= 16) repeated past the thresholds."""
    for n in range(1, LOOP_MAX_NGRAM + 1):
        reps = max(LOOP_MIN_REPEATS, -(-LOOP_MIN_TOKENS // n))
        span = n * reps
        if len(ids) < span:
            break
        tail = ids[-span:]
        if tail == tail[:n] * reps:
            return True
    return False


def default_cache_dir() -> Path:
    base = os.environ.get("ASRGGUF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "asrgguf")
    return Path(base)


def _checkpoint_stamp(model_dir: Path) -> str:
    parts = []
    for p in sorted(model_dir.glob("*")):
        if p.is_file() and (p.suffix in (".safetensors", ".json", ".txt")):
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{int(st.st_mtime)}")
    return "\n".join(parts)
