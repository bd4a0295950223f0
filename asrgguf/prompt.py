"""The official chat prompt, token for token, with the audio positions left for embeddings.

`<|im_start|>system\\n{context}<|im_end|>\\n<|im_start|>user\\n<|audio_start|>` + one position per
audio embedding + `<|audio_end|><|im_end|>\\n<|im_start|>assistant\\n`, then
`language {Name}<asr_text>` when the language is forced (the official `_build_text_prompt`).
Special tokens split the text, so tokenizing the two halves apart gives the official ids.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

AUDIO_PAD = "<|audio_pad|>"


@dataclass(frozen=True)
class Prompt:
    prefix: list[int]   # token ids before the audio
    n_audio: int        # embedding rows at the <|audio_pad|> positions
    suffix: list[int]   # token ids after the audio

    def __len__(self) -> int:
        return len(self.prefix) + self.n_audio + len(self.suffix)

    def token_ids(self, audio_pad_id: int) -> list[int]:
        """The whole prompt as the official processor's input_ids."""
        return self.prefix + [audio_pad_id] * self.n_audio + self.suffix


def prompt_text(context: str = "", language: str | None = None) -> tuple[str, str]:
    before = f"<|im_start|>system\n{context or ''}<|im_end|>\n<|im_start|>user\n<|audio_start|>"
    after = "<|audio_end|><|im_end|>\n<|im_start|>assistant\n"
    if language:
        after += f"language {language}<asr_text>"
    return before, after


def build_prompt(tokenize: Callable[[str], list[int]], n_audio: int, context: str = "",
                 language: str | None = None) -> Prompt:
    before, after = prompt_text(context, language)
    return Prompt(tokenize(before), n_audio, tokenize(after))
