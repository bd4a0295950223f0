"""The PyTorch audio tower (weights from the mmproj GGUF) equals the official one, windowed."""
import numpy as np
import pytest
import torch

from asrgguf.encoder import load_from_checkpoint, load_from_gguf, output_length
from asrgguf.checkpoint import Checkpoint
from asrgguf.features import LogMel
from support.reference import official_encoder, official_model, official_wav


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("clip", ["clip5", "clip20"])
@pytest.mark.parametrize("ck", ["ck_gqa", "ck_mha"])
def test_encoder_f32_matches_official(request, gguf_pair, clip, ck):
    ck_dir = request.getfixturevalue(ck)
    wav = official_wav(str(request.getfixturevalue(clip)))
    ref = official_encoder(official_model(str(ck_dir)), wav)
    _, mmproj = gguf_pair(ck_dir, "f32")
    enc = load_from_gguf(mmproj)
    feats = LogMel()(wav)
    ours = enc(feats).numpy()
    assert ours.shape == ref.shape == (output_length(feats.shape[1]), enc.params.output_dim)
    assert rel(ours, ref) < 1e-5


def test_encoder_from_checkpoint_equals_from_gguf(ck_gqa, gguf_pair, clip5):
    _, mmproj = gguf_pair(ck_gqa, "f32")
    feats = LogMel()(official_wav(str(clip5)))
    a = load_from_gguf(mmproj)(feats).numpy()
    b = load_from_checkpoint(Checkpoint(ck_gqa))(feats).numpy()
    assert rel(a, b) < 1e-6


@pytest.mark.parametrize("mel_frames", [37, 100, 250, 799, 800, 801, 1730])
def test_output_length_and_windows(ck_gqa, gguf_pair, mel_frames):
    """Any length: as many frames as the official formula; each 104-frame window independent."""
    from qwen_asr.core.transformers_backend.modeling_qwen3_asr import _get_feat_extract_output_lengths

    _, mmproj = gguf_pair(ck_gqa, "f32")
    enc = load_from_gguf(mmproj)
    feats = torch.randn(128, mel_frames)
    out = enc(feats)
    assert out.shape[0] == int(_get_feat_extract_output_lengths(torch.tensor(mel_frames))) == output_length(mel_frames)
    if mel_frames > 800:  # the second window's output does not depend on the first window's input
        feats2 = feats.clone()
        feats2[:, :800] = torch.randn(128, 800)
        assert torch.allclose(enc(feats2)[104:], out[104:], atol=1e-6)
        assert not torch.allclose(enc(feats2)[:104], out[:104])


def test_encoder_bf16_close(ck_gqa, gguf_pair, clip5):
    _, mmproj = gguf_pair(ck_gqa, "f32")
    feats = LogMel()(official_wav(str(clip5)))
    a = load_from_gguf(mmproj)(feats).numpy()
    b = load_from_gguf(mmproj, dtype=torch.bfloat16)(feats).float().numpy()
    assert rel(b, a) < 3e-2
