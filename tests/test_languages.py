import pytest
from qwen_asr.inference.utils import SUPPORTED_LANGUAGES

from asrgguf.errors import AsrggufError
from asrgguf.languages import LANGUAGES, normalize_language


def test_same_languages_as_official():
    assert list(LANGUAGES) == list(SUPPORTED_LANGUAGES)


@pytest.mark.parametrize("value,name", [("english", "English"), ("ENGLISH", "English"), ("en", "English"),
                                        ("ru", "Russian"), ("RU", "Russian"), ("yue", "Cantonese"),
                                        ("auto", None), ("", None), (None, None)])
def test_normalize(value, name):
    assert normalize_language(value) == name


def test_unknown_language():
    with pytest.raises(AsrggufError, match=r"^unknown language 'Klingon' \(see 'asrgguf languages'"):
        normalize_language("Klingon")
