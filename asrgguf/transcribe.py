"""`Transcriber`, the one engine: audio of any length -> pieces -> log-mel -> PyTorch encoder ->
prompt + embeddings -> llama.cpp -> text, as segments.

Every consumer (the command line, batches, the server, the cluster job) calls this class; the
stages live in their own modules (audio, pieces, features, encoder, prompt, decoder, generate,
output) and data flows one way through them.
"""
from __future__ import annotations

import contextlib
import glob
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from . import audio as audio_mod
from .decoder import Decoder, DecoderOptions
from .errors import AsrggufError
from .generate import Batcher, Job
from .languages import normalize_language
from .output import join_texts, merge_languages, parse_asr_output, sentence_times
from .pieces import DEFAULT_PIECE_SECONDS, Piece, iter_pieces, max_piece_samples
from .prompt import build_prompt

if TYPE_CHECKING:  # torch is imported while llama.cpp loads the decoder (see from_gguf)
    import torch

    from .encoder import AudioEncoder

DEFAULT_MAX_NEW_TOKENS = 512  # the official wrapper's default
TIMESTAMPS = ("segment", "word")


@dataclass
class Word:
    """One word of a segment with its start and end in seconds (word timestamps, from the aligner)."""
    text: str
    start: float
    end: float

    def to_dict(self) -> dict:
        """As JSON: text, start and end (seconds, rounded to ms)."""
        return {"text": self.text, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass
class Segment:
    """One piece of the recording and its transcript. start/end are exact (the samples where the audio
    was cut); `sentences` inside it have times interpolated by character count unless `words` are given."""
    id: int
    start: float
    end: float
    text: str
    language: str
    raw: str
    token_ids: list[int]
    repetition_stopped: bool = False
    sentences: list[dict] = field(default_factory=list)
    words: list[Word] | None = None

    def to_dict(self) -> dict:
        """As JSON (the `segments` entries of `asrgguf run --format json`)."""
        d = {"id": self.id, "start": round(self.start, 3), "end": round(self.end, 3), "text": self.text,
             "language": self.language, "repetition_stopped": self.repetition_stopped, "raw": self.raw,
             "token_ids": self.token_ids, "sentences": self.sentences}
        if self.words is not None:
            d["words"] = [w.to_dict() for w in self.words]
        return d


@dataclass
class Transcription:
    """The result of `Transcriber.transcribe`: the whole text and its segments, whatever the length."""
    audio: str
    language: str
    text: str
    segments: list[Segment]
    duration: float
    timings: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    timing: str = "interpolated"   # how fine times inside a segment are: "interpolated" or "word"

    @property
    def token_ids(self) -> list[int]:
        return [t for s in self.segments for t in s.token_ids]

    @property
    def raw(self) -> str:
        return "\n".join(s.raw for s in self.segments)

    @property
    def repetitions_stopped(self) -> int:
        return sum(s.repetition_stopped for s in self.segments)

    def to_dict(self) -> dict:
        """As JSON: what `asrgguf run --format json` prints."""
        return {"audio": self.audio, "language": self.language, "text": self.text, "duration": round(self.duration, 3),
                "timing": self.timing, "raw": self.raw, "token_ids": self.token_ids,
                "segments": [s.to_dict() for s in self.segments], "repetitions_stopped": self.repetitions_stopped,
                "timings": self.timings, "model": self.model}


@dataclass(frozen=True)
class Options:
    """How to transcribe: every keyword `Transcriber.transcribe` takes, checked once."""
    language: str | None = None          # None: detected; else a canonical name (normalize_language)
    context: str = ""                    # text for the system prompt (names, terms)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS    # per piece
    piece_seconds: float = DEFAULT_PIECE_SECONDS    # cut long audio near every this many seconds
    parallel: int = 1                    # pieces decoded at once as parallel sequences
    repetition_guard: bool = True        # stop looping generations; collapse repeats in the text
    timestamps: str = "segment"          # "segment" (interpolated inside a piece) or "word" (the aligner)
    bench_tokens: int | None = None      # benchmarks only: exactly N tokens a piece, end-of-turn ignored

    @classmethod
    def make(cls, **kw) -> "Options":
        """Options from `transcribe`'s keywords, checked (TypeError for an unknown keyword, AsrggufError for a
        bad value); language is normalised to its canonical name."""
        bad = set(kw) - set(cls.__dataclass_fields__)
        if bad:
            raise TypeError(f"unknown transcribe option {sorted(bad)[0]!r}")
        kw = {k: v for k, v in kw.items() if v is not None or k in ("language", "bench_tokens")}
        o = cls(**kw)
        lang = normalize_language(o.language)
        if not (isinstance(o.max_new_tokens, int) and o.max_new_tokens >= 1):
            raise AsrggufError(f"max_new_tokens must be a positive integer (got {o.max_new_tokens!r})")
        if not (isinstance(o.piece_seconds, (int, float)) and 10 <= o.piece_seconds <= 1200):
            raise AsrggufError(f"piece_seconds must be between 10 and 1200 (got {o.piece_seconds!r})")
        if not (isinstance(o.parallel, int) and 1 <= o.parallel <= 64):
            raise AsrggufError(f"parallel must be between 1 and 64 (got {o.parallel!r})")
        if o.timestamps not in TIMESTAMPS:
            raise AsrggufError(f"unknown timestamps {o.timestamps!r} (segment, word)")
        if o.timestamps == "word" and o.piece_seconds > 180:
            raise AsrggufError(f"word timestamps align at most 180 s at once (the official limit): piece_seconds "
                               f"must be at most 180 (got {o.piece_seconds:g})")
        if o.bench_tokens is not None and not (isinstance(o.bench_tokens, int) and o.bench_tokens >= 1):
            raise AsrggufError(f"bench_tokens must be a positive integer (got {o.bench_tokens!r})")
        return cls(**{**o.__dict__, "language": lang, "context": o.context or "", "piece_seconds": float(o.piece_seconds)})


DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device_dtype(device: str | None, dtype: str | None) -> None:
    """Unknown --device / --dtype names, before anything loads (availability is checked at load)."""
    if (device or "auto").lower() not in DEVICES:
        raise AsrggufError(f"unknown --device {device!r} (auto, cpu, cuda, mps)")
    if (dtype or "auto").lower() not in ("auto", *_DTYPES):
        raise AsrggufError(f"unknown --dtype {dtype!r} (auto, float32, float16, bfloat16)")


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


_DTYPES = {"float32": "float32", "float16": "float16", "bfloat16": "bfloat16",
           "f32": "float32", "f16": "float16", "bf16": "bfloat16"}


def pick_dtype(dtype: str, device: "torch.device") -> "torch.dtype":
    """The encoder's torch dtype: auto (float32 on CPU, float16 on a GPU) or a name (float32, f16, ...)."""
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
        self.aligner = None   # an Aligner, for timestamps="word"

    @classmethod
    def from_gguf(cls, decoder: str | Path, mmproj: str | Path | None = None, device: str = "auto",
                  dtype: str = "auto", n_gpu_layers: int | None = None, threads: int | None = None,
                  max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, n_ctx: int = 512,
                  flash_attn: bool | None = None, embeddings: bool = False) -> "Transcriber":
        """Load a decoder GGUF and its mmproj (default: the mmproj-*.gguf beside the decoder).

        device/dtype: the encoder's (auto: a GPU when torch has one; float32 on CPU, float16 on a GPU);
        n_gpu_layers: decoder layers on the GPU (None: all when llama.cpp was built with a GPU backend);
        threads: CPU threads (None: all cores); max_new_tokens: the default token limit per piece;
        n_ctx: the initial context (it grows as a request needs); flash_attn: None picks by device;
        embeddings: a context that can return final hidden states (the forced aligner).
        Header errors (missing file, not GGUF, wrong architecture, missing keys) come before any load."""
        t0 = time.perf_counter()
        opts = DecoderOptions(n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers, flash_attn=flash_attn,
                              embeddings=embeddings)
        from .mmproj import check_mmproj

        check_device_dtype(device, dtype)
        Decoder.check_file(decoder)  # header errors first, before anything slow
        mm = Path(mmproj) if mmproj else find_mmproj(decoder)
        check_mmproj(mm)

        def load_encoder():
            import torch

            from .encoder import load_from_gguf

            dev = pick_device(device)
            dt = pick_dtype(dtype, dev)
            if threads:
                torch.set_num_threads(threads)
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
    def from_pretrained(cls, model: str | Path, outtype: str = "q8_0", cache_dir: str | Path | None = None,
                        **kw) -> "Transcriber":
        """Quantize a Hugging Face checkpoint once into a cache, then load the GGUF pair from there.

        model: a checkpoint directory; a hub model name ("Qwen/Qwen3-ASR-0.6B"), fetched with
        huggingface_hub into its cache (HF_HOME, HF_HUB_OFFLINE honoured; only the files needed);
        or "demo", the built-in demo model's packaged pair (a directory named demo: "./demo").
        outtype: the decoder's type (q8_0); cache_dir: where the GGUF pair goes (default: the
        asrgguf cache, $ASRGGUF_CACHE or ~/.cache/asrgguf, one directory per model). Other keywords
        go to `from_gguf`."""
        dec, mm = pretrained_pair(model, outtype, cache_dir)
        return cls.from_gguf(dec, mm, **kw)

    # --- the stages, one piece at a time (the server's scheduler calls these too)
    def encode(self, wav: np.ndarray) -> tuple[np.ndarray, dict]:
        """16 kHz samples -> audio embeddings (n, n_embd) for the decoder, with the stages' timings."""
        import torch

        from .encoder import output_length

        t0 = time.perf_counter()
        feats = self.features(wav)
        if self.encoder.device.type == "cuda":
            torch.cuda.synchronize()
        t1 = time.perf_counter()
        emb = self.encoder(feats).float().cpu().numpy()
        t2 = time.perf_counter()
        assert emb.shape[0] == output_length(feats.shape[1], self.encoder.params.chunk_frames)
        return emb, {"features": t1 - t0, "encoder": t2 - t1}

    def open_pieces(self, audio, piece_seconds: float = DEFAULT_PIECE_SECONDS,
                    on_read: Callable[[float], None] | None = None) -> tuple[str, float | None, Iterator[Piece]]:
        """(name, duration from the header or None, lazy pieces) of any audio source.

        Sources: a file path, bytes, a binary file object, a 16 kHz mono float array, or
        (array, sample_rate) with channels on either axis. Files are read block by block."""
        if isinstance(audio, tuple):
            if len(audio) != 2:
                raise AsrggufError("audio tuple must be (array, sample_rate)")
            wav = audio_mod.prepare(audio[0], audio[1])
            name, duration, blocks = "<array>", wav.size / audio_mod.SAMPLE_RATE, iter([wav])
        elif isinstance(audio, np.ndarray) or (isinstance(audio, list) and audio and not isinstance(audio[0], str)):
            wav = audio_mod.prepare(audio, audio_mod.SAMPLE_RATE)
            name, duration, blocks = "<array>", wav.size / audio_mod.SAMPLE_RATE, iter([wav])
        else:
            info = audio_mod.probe(audio)
            name, duration = info.name, info.duration
            blocks = audio_mod.stream_16k(audio, info, on_read=on_read)
        n_min = self.encoder.params.n_fft // 2

        def checked() -> Iterator[Piece]:
            for piece in iter_pieces(blocks, piece_seconds):
                if piece.wav.size <= n_min:
                    raise AsrggufError(f"{name}: audio is too short ({piece.wav.size} samples at 16 kHz; "
                                       f"at least {n_min + 1} are needed)")
                yield piece
        return name, duration, checked()

    def positions_needed(self, opts: Options, n_samples: int | None = None) -> int:
        """Context positions a piece of n_samples (default: the longest piece) can need."""
        from .encoder import output_length

        n = max_piece_samples(opts.piece_seconds) if n_samples is None else n_samples
        n_audio = output_length(n // self.encoder.params.hop_length, self.encoder.params.chunk_frames)
        return len(build_prompt(self.decoder.tokenize, n_audio, opts.context, opts.language)) + \
            (opts.bench_tokens or opts.max_new_tokens)

    def make_job(self, piece: Piece, opts: Options, timings: dict | None = None, tag=None) -> Job:
        """Encode a piece and wrap it with its prompt as a `Job` for a `Batcher`."""
        emb, t = self.encode(piece.wav)
        if timings is not None:
            for k, v in t.items():
                timings[k] = timings.get(k, 0.0) + v
        prompt = build_prompt(self.decoder.tokenize, len(emb), opts.context, opts.language)
        return Job(prompt, emb, opts.bench_tokens or opts.max_new_tokens, opts.repetition_guard,
                   exact_tokens=bool(opts.bench_tokens), tag=piece if tag is None else tag)

    def batcher(self, opts: Options, n_seq: int | None = None, n_samples: int | None = None) -> Batcher:
        """A continuous-batching `generate.Batcher` of n_seq sequences (default: opts.parallel) sized for
        a piece of n_samples (default: the longest piece `opts` can make)."""
        return Batcher(self.decoder, self.stop_ids, n_seq or opts.parallel, self.positions_needed(opts, n_samples))

    def segment(self, job: Job, piece: Piece, opts: Options) -> Segment:
        """A finished job's text, language and times."""
        raw = self.decoder.detokenize(job.ids)
        lang, text = parse_asr_output(raw, opts.language, repetition_guard=opts.repetition_guard)
        seg = Segment(piece.index, piece.start_s, piece.end_s, text, lang, raw, list(job.ids), job.repetition_stopped)
        seg.sentences = sentence_times(text, seg.start, seg.end)
        if opts.timestamps == "word":
            seg.words = self.aligner.words(piece, seg)
        return seg

    # --- the public engine
    def iter_segments(self, audio, language: str | None = None, context: str = "", *,
                      timings: dict | None = None, **options) -> Iterator[Segment]:
        """Segments of any audio as they are decoded (lazily), in order; see `transcribe` for the options.

        The source is opened (and bad input reported) before this returns. `timings` (a dict), when
        given, is filled with the run's stage times and counts as it goes."""
        return self._start(audio, language, context, timings, options)[1]

    def _start(self, audio, language, context, timings, options) -> tuple[str, Iterator[Segment], Options]:
        if options.get("max_new_tokens") is None:
            options["max_new_tokens"] = self.max_new_tokens
        opts = Options.make(language=language, context=context, **options)
        if opts.timestamps == "word" and self.aligner is None:
            raise AsrggufError("word timestamps need an aligner (--aligner, or an Aligner given to the Transcriber)")
        t = timings if timings is not None else {}
        t.update({"load": self.load_s, "audio": 0.0, "features": 0.0, "encoder": 0.0, "prefill": 0.0, "decode": 0.0,
                  "prompt_tokens": 0, "generated_tokens": 0, "decode_tokens_per_s": 0.0, "audio_seconds": 0.0,
                  "pieces": 0, "piece_seconds": opts.piece_seconds})
        t0 = time.perf_counter()

        def on_read(s: float) -> None:
            t["audio"] += s
        name, duration, pieces = self.open_pieces(audio, opts.piece_seconds, on_read)
        return name, self._run(pieces, opts, t, t0, duration), opts

    def _run(self, pieces: Iterator[Piece], opts: Options, t: dict, t0: float,
             duration: float | None) -> Iterator[Segment]:
        # the KV cache is sized for the longest piece this audio can have (a 60-s file cut at 1200 s needs
        # 60 s of positions, not 1205 s); a header's duration can be an estimate, so a piece that does not
        # fit waits until the sequences are idle and the context grows
        longest = max_piece_samples(opts.piece_seconds)
        if duration:
            longest = min(longest, int(duration * audio_mod.SAMPLE_RATE * 1.01) + audio_mod.SAMPLE_RATE)
        batch = self.batcher(opts, n_samples=longest)
        done: dict[int, Segment] = {}
        next_id = 0
        more = True
        n_dec = 0
        waiting: Job | None = None
        try:
            while True:
                while more and batch.free:
                    if waiting is None:
                        piece = next(pieces, None)
                        if piece is None:
                            more = False
                            break
                        waiting = self.make_job(piece, opts, t)
                        if opts.timestamps != "word":
                            piece.wav = None  # only the embeddings wait for the decode
                    if not batch.fits(waiting) and batch.active:
                        break
                    job, waiting = waiting, None
                    batch.add(job)
                    t["prompt_tokens"] += len(job.prompt)
                    t["audio_seconds"] = (job.tag.start + job.tag.length) / audio_mod.SAMPLE_RATE
                if not batch.active:
                    break
                for job in batch.step():
                    ta = time.perf_counter()
                    done[job.tag.index] = self.segment(job, job.tag, opts)
                    if opts.timestamps == "word":  # the aligner's pass over the piece
                        t["align"] = t.get("align", 0.0) + time.perf_counter() - ta
                    t["generated_tokens"] += len(job.ids)
                    n_dec += max(0, len(job.ids) - 1)
                t["prefill"], t["decode"] = batch.prefill_s, batch.decode_s
                t["decode_tokens_per_s"] = n_dec / batch.decode_s if batch.decode_s > 0 and n_dec else 0.0
                while next_id in done:
                    t["pieces"] += 1
                    yield done.pop(next_id)
                    next_id += 1
        finally:
            for job in list(batch.active):
                batch.cancel(job)
            t["wall"] = time.perf_counter() - t0
            t["rtf"] = t["wall"] / t["audio_seconds"] if t["audio_seconds"] else 0.0

    def transcribe(self, audio, language: str | None = None, context: str = "", *,
                   on_segment: Callable[[Segment], None] | None = None, **options) -> Transcription:
        """Transcribe audio of any length into one `Transcription` (text, language, segments, timings).

        audio: a file path (any format soundfile or PyAV reads, video too), bytes, a binary file object,
        a 16 kHz mono float array, or (array, sample_rate) with channels on either axis.
        language: None detects it; a name or ISO code forces it. context: text for the system prompt.
        Options (keywords): max_new_tokens (per piece; the Transcriber's, 512 by default), piece_seconds
        (30: long audio is cut at the quietest point near every 30 s, the official boundaries for that
        length; memory stays flat), parallel (pieces decoded at once as parallel sequences, 1),
        repetition_guard (True), timestamps ("segment", or "word" with an aligner), bench_tokens
        (benchmarks only). on_segment(segment) is called as each segment is ready, in order.
        """
        timings: dict = {}
        name, segments, opts = self._start(audio, language, context, timings, options)
        segs = []
        for seg in segments:
            segs.append(seg)
            if on_segment:
                on_segment(seg)
        return Transcription(audio=name, language=merge_languages(s.language for s in segs),
                             text=join_texts(s.text for s in segs), segments=segs,
                             duration=float(timings.get("audio_seconds", 0.0)), timings=timings,
                             model=dict(self.model_info), timing="word" if opts.timestamps == "word" else "interpolated")

    def close(self) -> None:
        """Free the llama.cpp model and context (the encoder goes with the object)."""
        self.decoder.close()

    def __enter__(self) -> "Transcriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def pretrained_pair(model: str | Path, outtype: str = "q8_0", cache_dir: str | Path | None = None
                    ) -> tuple[Path, Path]:
    """The GGUF pair `Transcriber.from_pretrained` loads: the demo's packaged pair, or a checkpoint
    (a directory, or a hub model name fetched into the hub's cache) quantized once into the cache
    (again when the checkpoint's files change)."""
    from . import demo, hub
    from .convert import output_paths, quantize_checkpoint

    if isinstance(model, str) and model == demo.NAME:  # packaged: nothing to quantize or cache
        if outtype != "q8_0":
            raise AsrggufError(f"the demo model ships as q8_0 only; for {outtype}: "
                               f"asrgguf quantize {demo.CHECKPOINT} --outtype {outtype}")
        return Path(demo.DECODER), Path(demo.MMPROJ)
    name = None
    if isinstance(model, str) and hub.is_model_name(model):
        name = model.split("/", 1)[1]
        model_dir = hub.snapshot(model)
        cache = Path(cache_dir) if cache_dir else default_cache_dir() / hub.cache_name(model)
    else:
        model_dir = Path(model)
        if not model_dir.is_dir():
            raise AsrggufError(f"{model_dir}: no such checkpoint directory (nor a model name such as "
                               f"Qwen/Qwen3-ASR-0.6B)")
        cache = Path(cache_dir) if cache_dir else default_cache_dir() / model_dir.resolve().name
    mm_type = "f32" if outtype == "f32" else "f16"
    dec, mm = output_paths(model_dir, outtype, cache, mm_type, name=name)
    stamp = cache / f".source-{outtype}"
    src_id = _checkpoint_stamp(model_dir)
    if not (dec.exists() and mm.exists() and stamp.exists() and stamp.read_text() == src_id):
        quantize_checkpoint(model_dir, outtype, cache, mmproj_type=mm_type, name=name)
        stamp.write_text(src_id)
    return dec, mm


def default_cache_dir() -> Path:
    """Where `from_pretrained` keeps quantized pairs: $ASRGGUF_CACHE, else $XDG_CACHE_HOME/asrgguf or
    ~/.cache/asrgguf."""
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
