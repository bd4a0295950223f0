"""Transcribe only the speech of a recording: asrgguf/vad.py's pieces through the public Transcriber, with
every time mapped back to the recording (a demonstration of the contract `--vad` wires into the engine).

    python3 tools/vad_transcribe.py AUDIO [--model demo] [--piece-seconds 30] [--no-pack] [--language English]

Prints one JSON line per segment: recording start/end (s), the piece's spans, the text. Nothing on a
recording without speech.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asrgguf import audio, vad  # noqa: E402


def transcribe_speech(transcriber, source, piece_seconds: float = 30.0, options: vad.VadOptions | None = None,
                      pack: bool = True, language: str | None = None) -> Iterator[dict]:
    """Segments of the speech in `source` (a path, or a 16 kHz float32 array), times in the recording."""
    if isinstance(source, (str, Path)):
        blocks = audio.stream_16k(str(source), audio.probe(str(source)))
    else:
        wav = audio.prepare(source, audio.SAMPLE_RATE)
        blocks = (wav[i:i + 16000] for i in range(0, wav.size, 16000))
    for piece in vad.iter_speech_pieces(blocks, piece_seconds, options, pack=pack):
        result = transcriber.transcribe(piece.wav, language=language, piece_seconds=piece_seconds)
        for seg in result.segments:
            yield {"start": round(piece.recording_time(seg.start), 3),
                   "end": round(piece.recording_time(seg.end, end=True), 3),
                   "spans_s": [[round(s.start / 16000, 3), round(s.end / 16000, 3)] for s in piece.spans],
                   "text": seg.text}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("audio")
    ap.add_argument("--model", default="demo")
    ap.add_argument("--piece-seconds", type=float, default=30.0)
    ap.add_argument("--no-pack", action="store_true", help="one speech region per piece")
    ap.add_argument("--language", default=None)
    a = ap.parse_args()
    from asrgguf import Transcriber
    from asrgguf.errors import AsrggufError

    try:
        with Transcriber.from_pretrained(a.model) as tr:
            for seg in transcribe_speech(tr, a.audio, a.piece_seconds, pack=not a.no_pack, language=a.language):
                print(json.dumps(seg), flush=True)
    except AsrggufError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
