"""Log-mel features equal the official processor's (WhisperFeatureExtractor) to < 1e-5 relative."""
import numpy as np
import pytest

from asrgguf.features import LogMel, n_frames
from support.reference import official_features, official_model, official_wav


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("clip", ["clip5", "clip20"])
def test_logmel_matches_official(request, ck_gqa, clip):
    path = str(request.getfixturevalue(clip))
    model = official_model(str(ck_gqa))
    wav = official_wav(path)
    ref = official_features(model, wav)
    ours = LogMel()(wav).numpy()
    assert ours.shape == ref.shape == (128, n_frames(len(wav)))
    assert rel(ours, ref) < 1e-5


@pytest.mark.parametrize("n", [201, 1599, 16000 * 3 + 77])
def test_frame_count_matches_official(ck_gqa, n):
    model = official_model(str(ck_gqa))
    wav = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    ref = official_features(model, wav)
    assert LogMel()(wav).shape == ref.shape


def test_too_short_is_an_error():
    with pytest.raises(ValueError, match="audio is too short"):
        LogMel()(np.zeros(200, np.float32))


def test_mel_filters_equal_whisper_extractor():
    from transformers import WhisperFeatureExtractor

    from asrgguf.features import mel_filters

    fe = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400)
    assert np.abs(mel_filters(16000, 400, 128) - fe.mel_filters.T).max() < 1e-12
