"""Output parsing equals the official parse_asr_output / detect_and_fix_repetitions."""
import random

import pytest
from qwen_asr.inference.utils import detect_and_fix_repetitions, parse_asr_output as official_parse

from asrgguf.parse import fix_repetitions, join_texts, merge_languages, parse_asr_output
from conftest import official_utils

CASES = [
    "language English<asr_text>Hello world.",
    "language None<asr_text>",
    "language None<asr_text>  some text ",
    "  language cHINese\n<asr_text>你好 ",
    "language English\nextra\n<asr_text>text",
    "no tag at all",
    "",
    "   ",
    "language <asr_text>x",
    "language English<asr_text>" + "ha" * 40,
    "language English<asr_text>" + "a" * 50 + " then " + "xyz" * 30 + " end",
    "<asr_text>only text",
]


@pytest.mark.parametrize("raw", CASES)
@pytest.mark.parametrize("forced", [None, "English"])
def test_parse_matches_official(raw, forced):
    assert parse_asr_output(raw, forced) == official_parse(raw, forced)


def test_repetition_fix_matches_official_on_random_strings():
    rng = random.Random(0)
    for _ in range(300):
        parts = []
        for _ in range(rng.randint(1, 6)):
            unit = "".join(rng.choice("ab c.") for _ in range(rng.randint(1, 4)))
            parts.append(unit * rng.choice([1, 2, 5, 19, 20, 21, 45]))
        s = "".join(parts)
        assert fix_repetitions(s) == detect_and_fix_repetitions(s), s


def test_join_texts():
    assert join_texts(["Hello world.", "Next one", "", "下一个", "句子。", "End"]) == \
        "Hello world. Next one下一个句子。End"
    assert merge_languages(["English", "", "English", "Chinese", "English"]) == \
        official_utils().merge_languages(["English", "", "English", "Chinese", "English"])
