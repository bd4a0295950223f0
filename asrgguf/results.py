"""What transcription gives back: typed `Word`, `Sentence`, `Segment`, `TranscriptionInfo`, and the whole
`Transcription` (faster-whisper's shape: `segments, info = model.transcribe(audio)`, segments lazy).

Plain data: nothing here imports the engine, so every layer (writers, the aligner, the server, live
streams, the cluster job) can use these types.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .parse import join_texts, merge_languages


@dataclass
class Word:
    """One word (an alignment unit) with its start and end in seconds (from the forced aligner)."""
    text: str
    start: float
    end: float

    def to_dict(self) -> dict:
        """As JSON: text, start and end (seconds, rounded to ms)."""
        return {"text": self.text, "start": round(self.start, 3), "end": round(self.end, 3)}


@dataclass
class Sentence:
    """A sentence of a segment; its times are interpolated by character count inside the segment."""
    start: float
    end: float
    text: str

    def to_dict(self) -> dict:
        return {"start": round(self.start, 3), "end": round(self.end, 3), "text": self.text}


@dataclass
class Segment:
    """One piece of the recording and its transcript. start/end are exact (the samples where the audio
    was cut); `sentences` inside it have times interpolated by character count; `words` come from the
    aligner when word timestamps were asked for."""
    id: int
    start: float
    end: float
    text: str
    language: str
    raw: str
    token_ids: list[int]
    repetition_stopped: bool = False
    sentences: list[Sentence] = field(default_factory=list)
    words: list[Word] | None = None

    def to_dict(self) -> dict:
        """As JSON (the `segments` entries of `asrgguf run --format json`)."""
        d = {"id": self.id, "start": round(self.start, 3), "end": round(self.end, 3), "text": self.text,
             "language": self.language, "repetition_stopped": self.repetition_stopped, "raw": self.raw,
             "token_ids": self.token_ids, "sentences": [s.to_dict() for s in self.sentences]}
        if self.words is not None:
            d["words"] = [w.to_dict() for w in self.words]
        return d


@dataclass
class TranscriptionInfo:
    """About one transcription run, filled as its segments are generated: `language` (the forced one at
    once, else the detected languages so far), `duration` (the header's estimate at first, the audio's
    exact length once read), `timings` (stage times and counts), `model`, `options`."""
    audio: str
    language: str | None
    duration: float
    options: object = None
    model: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)

    @property
    def timing(self) -> str:
        """How fine times inside a segment are: "word" (the aligner) or "interpolated"."""
        return "word" if getattr(self.options, "timestamps", "segment") == "word" else "interpolated"


@dataclass
class Transcription:
    """A whole transcription: the text and all segments (`Transcription.collect(*model.transcribe(audio))`)."""
    audio: str
    language: str
    text: str
    segments: list[Segment]
    duration: float
    timings: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    timing: str = "interpolated"   # how fine times inside a segment are: "interpolated" or "word"

    @classmethod
    def collect(cls, segments: Iterable[Segment], info: TranscriptionInfo) -> "Transcription":
        """Run a lazy transcription to its end and gather it."""
        segs = list(segments)
        return cls(audio=info.audio, language=merge_languages(s.language for s in segs),
                   text=join_texts(s.text for s in segs), segments=segs, duration=float(info.duration),
                   timings=info.timings, model=dict(info.model), timing=info.timing)

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
