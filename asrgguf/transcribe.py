"""`Transcriber`, the one engine: audio of any length -> pieces -> log-mel -> PyTorch encoder ->
prompt + embeddings -> llama.cpp -> text, as segments.

`segments, info = model.transcribe(audio)` (faster-whisper's shape): `segments` is a lazy generator of
typed `Segment`s, `info` a `TranscriptionInfo` filled as it runs. Every consumer (the command line,
batches, the server, live streams, the cluster job) goes through this class and its one `Scheduler`;
the stages live in their own modules (audio, pieces, features, encoder, prompt, decoder, generate,
output) and data flows one way through them.
"""
from __future__ import annotations

import contextlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from . import audio as audio_mod
from .decoder import Decoder, DecoderOptions
from .errors import AsrggufError
from .generate import Job
from .live import Stream
from .models import find_mmproj, llama_gpu_backends, pretrained_pair
from .options import DEFAULT_MAX_NEW_TOKENS, Options, check_device_dtype
from .parse import parse_asr_output, sentence_times
from .pieces import DEFAULT_PIECE_SECONDS, Piece, iter_pieces, max_piece_samples
from .prompt import build_prompt
from .results import Segment, Sentence, Transcription, TranscriptionInfo
from .scheduler import IterFeed, Request, Scheduler
from .vad import VadOptions

if TYPE_CHECKING:  # torch is imported while llama.cpp loads the decoder (see from_gguf)
    from .encoder import AudioEncoder


class Transcriber:
    """Qwen3-ASR with a PyTorch encoder and a llama.cpp GGUF decoder.

    aligner: a loaded `Aligner` (word timestamps, `timestamps="word"`), or None; diarizer: a loaded
    `speakers.Diarizer` (speaker labels, `diarize=True`), or None (loaded at the first use)."""

    def __init__(self, encoder: "AudioEncoder", decoder: Decoder, model_info: dict, load_s: float = 0.0,
                 max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, aligner=None, diarizer=None):
        from .features import LogMel

        self.encoder = encoder
        self.decoder = decoder
        p = encoder.params
        self.features = LogMel(p.num_mel_bins, p.n_fft, p.hop_length, p.sample_rate, device=encoder.device)
        self.model_info = model_info
        self.load_s = load_s
        self.load_stages: dict = {}   # from_gguf: {stage: {"start": s, "end": s}} from the load's start
        self.max_new_tokens = max_new_tokens
        if p.output_dim != decoder.n_embd:
            raise AsrggufError(f"{model_info.get('mmproj')}: encoder output width {p.output_dim} does not match "
                               f"the decoder's {decoder.n_embd} ({model_info.get('decoder')}): not a matching pair")
        self.stop_ids = {decoder.im_end, decoder.endoftext}
        self.aligner = aligner
        self.diarizer = diarizer
        self._diarize_lock = threading.Lock()   # one diarization at a time (the server's worker threads)
        self._scheduler: Scheduler | None = None

    @classmethod
    def from_gguf(cls, decoder: str | Path, mmproj: str | Path | None = None, device: str = "auto",
                  dtype: str = "auto", n_gpu_layers: int | None = None, threads: int | None = None,
                  max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS, n_ctx: int = 512,
                  flash_attn: bool | None = None, embeddings: bool = False, native: bool | None = None,
                  aligner=None, diarizer=None) -> "Transcriber":
        """Load a decoder GGUF and its mmproj (default: the mmproj-*.gguf beside the decoder).

        device/dtype: the encoder's (auto: a GPU when torch has one; float32 on CPU, float16 on a GPU);
        n_gpu_layers: decoder layers on the GPU (None: all when llama.cpp was built with a GPU backend);
        threads: CPU threads (None: all cores); max_new_tokens: the default token limit per piece;
        n_ctx: the initial context (it grows as a request needs); flash_attn: None picks by device;
        embeddings: a context that can return final hidden states (the forced aligner); native: asrgguf's
        native q8_0 backend (None: on unless ASRGGUF_NO_NATIVE=1); aligner: a loaded `Aligner` for word
        timestamps; diarizer: a loaded `speakers.Diarizer` for speaker labels. Header errors (missing file,
        not GGUF, wrong architecture, missing keys) come before
        any load."""
        from .mmproj import check_mmproj

        t0 = time.perf_counter()
        opts = DecoderOptions(n_ctx=n_ctx, n_threads=threads, n_gpu_layers=n_gpu_layers, flash_attn=flash_attn,
                              embeddings=embeddings, native=native)
        check_device_dtype(device, dtype)
        Decoder.check_file(decoder)  # header errors first, before anything slow
        mm = Path(mmproj) if mmproj else find_mmproj(decoder)
        check_mmproj(mm)
        stages: dict = {}   # each load stage's start and end, seconds from t0 (the threads overlap them)

        def stage(name: str, start: float) -> None:
            stages[name] = {"start": round(start - t0, 4), "end": round(time.perf_counter() - t0, 4)}

        def load_encoder():
            ts = time.perf_counter()
            import torch

            stage("import_torch", ts)
            from .devices import pick_device, pick_dtype
            from .encoder import load_from_gguf

            dev = pick_device(device)
            dt = pick_dtype(dtype, dev)
            if threads:
                torch.set_num_threads(threads)
            te = time.perf_counter()
            enc = load_from_gguf(mm, device=dev, dtype=dt)
            stage("encoder", te)
            return enc, dev, dt

        def load_decoder():
            ts = time.perf_counter()
            d = Decoder(decoder, opts)
            stage("decoder", ts)   # llama.cpp's load, the native backend's repack or repack cache within it
            return d

        # Both legs run on threads that end with the load, never on the caller's: a thread that runs OpenMP
        # work (torch's and ggml's share libgomp) keeps a team of workers while it lives, and once libgomp
        # manages more threads than there are cores its workers stop spinning between parallel regions.
        # A caller that loads here and decodes on another thread (a server's or a live stream's engine
        # thread) then decoded at half speed on 2 cores (docs/streaming.md, "OpenMP teams").
        with ThreadPoolExecutor(2) as pool:
            if llama_gpu_backends():
                # one after the other on GPU builds: on an H200 the two CUDA start-ups side by side loaded
                # about 0.8 s slower than in turn (docs/benchmarks.md, "CUDA")
                enc, dev, dt = pool.submit(load_encoder).result()
                dec = pool.submit(load_decoder).result()
            else:
                # CPU build: llama.cpp loads (and repacks) the decoder while torch is imported and the encoder
                # loads: about a second less start-up on 2 cores
                fut = pool.submit(load_decoder)
                try:
                    enc, dev, dt = pool.submit(load_encoder).result()
                except BaseException:
                    with contextlib.suppress(BaseException):
                        fut.result().close()
                    raise
                dec = fut.result()
            info = {"decoder": str(decoder), "mmproj": str(mm), "encoder_device": dev.type,
                    "encoder_dtype": str(dt).replace("torch.", ""), "decoder_device": "gpu" if dec.offloaded else "cpu",
                    "native": dec.native_info}
            # (the features' window is torch work too: MKL's cos runs an OpenMP region)
            tr = pool.submit(cls, enc, dec, info, time.perf_counter() - t0, max_new_tokens, aligner, diarizer).result()
        tr.load_stages = stages
        return tr

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

    # --- the stages, one piece at a time (the scheduler calls these)
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

    def open_pieces(self, audio, piece_seconds: float = DEFAULT_PIECE_SECONDS, on_read=None,
                    vad=None, counted: dict | None = None) -> tuple[str, float | None, Iterator[Piece]]:
        """(name, duration from the header or None, lazy pieces) of any audio source.

        Sources: a file path, bytes, a binary file object, a 16 kHz mono float array, or
        (array, sample_rate) with channels on either axis. Files are read block by block. vad (a checked
        `VadOptions`): pieces made of speech regions only (one region a piece), their `spans` mapping
        them back to the recording. counted["samples"], when given, counts the samples read."""
        name, duration, blocks = self.open_blocks(audio, on_read)
        n_min = self.encoder.params.n_fft // 2
        if counted is not None:
            blocks = _counting(blocks, counted)
        if vad is not None:
            from .vad import iter_speech_pieces

            pieces = iter_speech_pieces(blocks, piece_seconds, vad, pack=False)
        else:
            pieces = iter_pieces(blocks, piece_seconds)

        def checked() -> Iterator[Piece]:
            for piece in pieces:
                if piece.wav.size <= n_min:
                    raise AsrggufError(f"{name}: audio is too short ({piece.wav.size} samples at 16 kHz; "
                                       f"at least {n_min + 1} are needed)")
                yield piece
        return name, duration, checked()

    @staticmethod
    def open_blocks(audio, on_read=None) -> tuple[str, float | None, Iterator[np.ndarray]]:
        """(name, duration from the header or None, lazy 16 kHz mono float32 blocks) of any audio source
        (as `open_pieces`); each call reads the source again from its start."""
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
        return name, duration, blocks

    def diarize(self, audio, options=None, on_progress=None) -> list:
        """Speaker turns (`speakers.Turn`: start, end, speaker) of any audio source, in order, read block by
        block in bounded memory (`speakers.Diarizer.turns_of_blocks`); the diarizer is loaded at the first
        call. options: a `speakers.DiarizeOptions` (the speaker count); on_progress(seconds) as audio is read."""
        with self._diarize_lock:
            if self.diarizer is None:
                from .speakers import Diarizer

                self.diarizer = Diarizer()
            return self.diarizer.turns_of_blocks(self.open_blocks(audio)[2], options, on_progress)

    def positions_needed(self, opts: Options, n_samples: int | None = None) -> int:
        """Context positions a piece of n_samples (default: the longest piece) can need."""
        from .encoder import output_length

        n = max_piece_samples(opts.piece_seconds) if n_samples is None else n_samples
        n_audio = output_length(n // self.encoder.params.hop_length, self.encoder.params.chunk_frames)
        return len(build_prompt(self.decoder.tokenize, n_audio, opts.context, opts.language)) + \
            (opts.bench_tokens or opts.max_new_tokens)

    def make_job(self, piece: Piece, opts: Options, timings: dict | None = None, tag=None) -> Job:
        """Encode a piece and wrap it with its prompt as a `Job` for the scheduler's batch."""
        embed = getattr(piece, "embed", None)
        if embed is not None:   # a live partial: its stream's cached encoder windows (live_encoder.py)
            t0 = time.perf_counter()
            emb = embed()
            t = {"encoder": time.perf_counter() - t0}
        else:
            emb, t = self.encode(piece.wav)
        if timings is not None:
            for k, v in t.items():
                timings[k] = timings.get(k, 0.0) + v
        prompt = build_prompt(self.decoder.tokenize, len(emb), opts.context, opts.language)
        return Job(prompt, emb, opts.bench_tokens or opts.max_new_tokens, opts.repetition_guard,
                   exact_tokens=bool(opts.bench_tokens), tag=piece if tag is None else tag,
                   prefix=list(getattr(piece, "prefix", ())), draft=list(getattr(piece, "draft", ())),
                   keep=getattr(piece, "keep", None))

    def segment(self, job: Job, piece: Piece, opts: Options) -> Segment:
        """A finished job's text, language and times (words from the aligner when asked for)."""
        raw = self.decoder.detokenize(job.ids)
        lang, text = parse_asr_output(raw, opts.language, repetition_guard=opts.repetition_guard)
        seg = Segment(piece.index, piece.start_s, piece.end_s, text, lang, raw, list(job.ids), job.repetition_stopped)
        if piece.spans is None:
            seg.sentences = [Sentence(**s) for s in sentence_times(text, seg.start, seg.end)]
        else:   # speech regions: interpolated over the speech, mapped back to the recording
            speech = sum(s.length for s in piece.spans) / audio_mod.SAMPLE_RATE
            seg.sentences = [Sentence(round(piece.recording_time(s["start"]), 3),
                                      round(piece.recording_time(s["end"], end=True), 3), s["text"])
                             for s in sentence_times(text, 0.0, speech)]
        if opts.timestamps == "word":
            seg.words = self.aligner.words(piece, seg)
        return seg

    @property
    def scheduler(self) -> Scheduler:
        """The engine's one scheduler: every transcription of this engine decodes on its sequences."""
        if self._scheduler is None:
            self._scheduler = Scheduler(self)
        return self._scheduler

    def options(self, language=None, context: str = "", **options) -> Options:
        """`transcribe`'s keywords, checked (the engine's max_new_tokens by default)."""
        if options.get("max_new_tokens") is None:
            options["max_new_tokens"] = self.max_new_tokens
        opts = Options.make(language=language, context=context, **options)
        if opts.timestamps == "word" and self.aligner is None:
            raise AsrggufError("word timestamps need an aligner (--aligner, or an Aligner given to the Transcriber)")
        if opts.diarize is not None and self.diarizer is None:
            from .speakers import check_installed

            check_installed()
        return opts

    # --- the public engine
    def transcribe(self, audio, language: str | None = None, context: str = "", *, on_diarize=None, **options
                   ) -> tuple[Iterator[Segment], TranscriptionInfo]:
        """`segments, info` for audio of any length: `segments` a lazy generator of `Segment`s in order (the
        work happens as it is consumed), `info` a `TranscriptionInfo` whose language, duration and timings
        are filled as the generator runs. `Transcription.collect(segments, info)` gathers the whole result.

        audio: a file path (any format soundfile or PyAV reads, video too), bytes, a binary file object,
        a 16 kHz mono float array, or (array, sample_rate) with channels on either axis.
        language: None detects it; a name or ISO code forces it. context: text for the system prompt.
        Options (keywords): max_new_tokens (per piece; the Transcriber's, 512 by default), piece_seconds
        (30: long audio is cut at the quietest point near every 30 s, the official boundaries for that
        length; memory stays flat), parallel (pieces decoded at once as parallel sequences, 1),
        repetition_guard (True), timestamps ("segment", or "word" with an aligner), bench_tokens
        (benchmarks only), vad (True or a `VadOptions`), diarize (True or a `speakers.DiarizeOptions`: the
        recording is diarized first, in bounded memory, and every segment, sentence and word gets the
        speaker who talks longest within it; `info.turns` holds the turns; on_diarize(seconds) is told
        the progress of that first pass). The source is opened, and bad input reported, before this returns."""
        opts = self.options(language, context, **options)
        if opts.diarize is not None and hasattr(audio, "read"):   # a file object is read twice: keep its bytes
            audio = audio.read()
        t = {"load": self.load_s, "audio": 0.0, "features": 0.0, "encoder": 0.0, "prefill": 0.0, "decode": 0.0,
             "prompt_tokens": 0, "generated_tokens": 0, "decode_tokens_per_s": 0.0, "audio_seconds": 0.0,
             "pieces": 0, "piece_seconds": opts.piece_seconds}
        if self.load_stages:
            t["load_stages"] = self.load_stages
        t0 = time.perf_counter()

        def on_read(s: float) -> None:
            t["audio"] += s
        counted = {"samples": 0}
        name, duration, pieces = self.open_pieces(audio, opts.piece_seconds, on_read, opts.vad, counted)
        info = TranscriptionInfo(audio=name, language=opts.language, duration=float(duration or 0.0),
                                 options=opts, model=dict(self.model_info), timings=t)
        req = Request(IterFeed(pieces), opts)
        # the KV cache is sized for the longest piece this audio can have (a 60-s file cut at 1200 s needs
        # 60 s of positions, not 1205 s); a header's duration is an estimate: a longer piece grows it
        req.longest = max_piece_samples(opts.piece_seconds)
        if duration:
            req.longest = min(req.longest, int(duration * audio_mod.SAMPLE_RATE * 1.01) + audio_mod.SAMPLE_RATE)
        return self._segments(req, info, t0, counted, audio, on_diarize), info

    def stream(self, language: str | None = None, context: str = "", *, vad: VadOptions | None = None,
               step_seconds: float = 1.0, max_utterance_seconds: float = 30.0, wait: bool = True,
               on_event=None, detect: bool = True, partials: str = "draft", rollback: int = 5,
               draft_final: bool = True, keep_kv: bool = True, speculative_final: bool = False, **options) -> Stream:
        """A live stream (`live.Stream`): feed(samples) / finish() give partial and final events; each final
        is what `transcribe` gives for the utterance's audio. vad: the utterance detector's settings
        (default `live.LIVE_VAD`); step_seconds: speech between partials; max_utterance_seconds: an
        utterance is cut at this length. partials: "draft" (the last partial's tokens verified: each partial
        is the greedy decode of the utterance so far), "rollback" (the official streaming: the last partial
        less its last `rollback` tokens taken as given) or "full" (decoded from scratch); draft_final: the
        last partial's tokens as the final's draft (verified: the final stays exact); keep_kv: the stream keeps
        its sequence's KV cache between its steps and re-prefills only what changed (docs/streaming.md);
        speculative_final: decode the utterance when the detector's silence begins, the final verifying it.
        Other options as `transcribe`'s (max_new_tokens, timestamps ...)."""
        opts = self.options(language, context, **options)
        return Stream(self, opts, vad, step_seconds, max_utterance_seconds, wait, on_event, detect,
                      partials, rollback, draft_final, keep_kv, speculative_final)

    def transcribe_all(self, audio, language: str | None = None, context: str = "", **options) -> Transcription:
        """The whole `Transcription` in one call: `Transcription.collect(*self.transcribe(...))`."""
        return Transcription.collect(*self.transcribe(audio, language, context, **options))

    def _segments(self, req: Request, info: TranscriptionInfo, t0: float, counted: dict, audio=None,
                  on_diarize=None) -> Iterator[Segment]:
        sched, t = self.scheduler, info.timings
        if info.options.diarize is not None:   # speakers first: the labels need the whole recording's clusters
            td = time.perf_counter()
            info.turns = self.diarize(audio, info.options.diarize, on_diarize)
            t["diarize"] = time.perf_counter() - td
        sched.submit(req)
        langs: list[str] = []
        try:
            while True:
                while req.ready:
                    seg = req.ready.popleft()
                    if info.turns is not None:
                        seg.label(info.turns)
                    self._update(info, req)
                    if seg.language and info.options.language is None and seg.language not in langs:
                        langs.append(seg.language)
                        info.language = ",".join(langs)
                    yield seg
                if req.error is not None:
                    # no reference cycle exception -> traceback -> frame -> request or local -> exception:
                    # the exception's frames (the source's decoder state among them) must go with it
                    err, req.error = req.error, None
                    try:
                        raise err
                    finally:
                        err = None
                if req.finished:
                    break
                sched.pump()
        finally:
            sched.cancel(req)
            self._update(info, req)
            t["audio_seconds"] = max(t["audio_seconds"], counted["samples"] / audio_mod.SAMPLE_RATE)
            info.duration = t["audio_seconds"] or info.duration
            t["wall"] = time.perf_counter() - t0
            t["rtf"] = t["wall"] / t["audio_seconds"] if t["audio_seconds"] else 0.0

    @staticmethod
    def _update(info: TranscriptionInfo, req: Request) -> None:
        t, s = info.timings, req.stats
        for k in ("features", "encoder", "prefill", "decode", "prompt_tokens", "generated_tokens", "pieces",
                  "audio_seconds"):
            t[k] = s[k]
        if s["align"]:
            t["align"] = s["align"]
        t["decode_tokens_per_s"] = s["decode_steps_tokens"] / s["decode"] if s["decode"] > 0 else 0.0

    def close(self) -> None:
        """Free the llama.cpp model and context (the encoder goes with the object)."""
        self.decoder.close()
        if self.aligner is not None:
            self.aligner.close()
        self.diarizer = None

    def __enter__(self) -> "Transcriber":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _counting(blocks, counted: dict) -> Iterator[np.ndarray]:
    for b in blocks:
        counted["samples"] += len(b)
        yield b
