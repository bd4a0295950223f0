"""Cutting long audio: the pieces equal the official split_audio_into_chunks, whatever the block size."""
import numpy as np
import pytest

from asrgguf import audio, pieces as pc
from conftest import official_utils as official, speech_with_silences


def assert_same_pieces(ours, theirs):
    assert len(ours) == len(theirs)
    for (a, oa), (b, ob) in zip(ours, theirs):
        assert a.dtype == np.float32 and np.array_equal(a, b)
        assert abs(oa - ob) < 1e-6


@pytest.mark.parametrize("max_sec", [10.0, 13.7, 30.0])
@pytest.mark.parametrize("block", [None, 1234, 16000 * 7])
def test_split_matches_official_synthetic(clips, max_sec, block):
    import librosa

    wav = librosa.resample(speech_with_silences(clips, 95, seed=int(max_sec)), orig_sr=22050, target_sr=16000)
    ours = pc.split_array(wav, max_sec, block=block)
    assert_same_pieces(ours, official().split_audio_into_chunks(wav, 16000, max_sec))
    assert len(ours) >= 3


def test_split_edge_cases():
    rng = np.random.default_rng(3)
    short = rng.standard_normal(16000 * 9).astype(np.float32) * 0.1
    assert_same_pieces(pc.split_array(short, 10.0), official().split_audio_into_chunks(short, 16000, 10.0))
    # a silent stretch just before the end: the tail is shorter than 0.5 s and gets zero-padded
    x = rng.standard_normal(int(16000 * 10.3)).astype(np.float32) * 0.1
    x[int(16000 * 9.9):int(16000 * 10.0)] = 0.0
    ours = pc.split_array(x, 10.0, block=999)
    assert_same_pieces(ours, official().split_audio_into_chunks(x, 16000, 10.0))
    assert len(ours) == 2 and len(ours[1][0]) == 8000
    # all silence: ties broken as numpy's argmin breaks them
    z = np.zeros(16000 * 25, np.float32)
    assert_same_pieces(pc.split_array(z, 10.0, block=5000), official().split_audio_into_chunks(z, 16000, 10.0))


@pytest.mark.parametrize("kind", ["wav16", "flac44", "mp3", "float_hot"])
def test_stream_and_pieces_match_official_on_real_audio(real_files, kind):
    path = str(real_files[kind])
    ref = official().normalize_audio_input(path)
    assert ref.size > 16000 * 25  # about 28 s: three cuts at 10 s
    got = np.concatenate(list(audio.stream_16k(path, block_frames=1152 * 7 if kind != "mp3" else audio.BLOCK_FRAMES)))
    pieces = list(pc.iter_pieces(audio.stream_16k(path), 10.0))
    theirs = official().split_audio_into_chunks(ref, 16000, 10.0)
    if kind == "mp3":
        # libsndfile's mp3 reader gives slightly different samples when read in blocks (a few ulp with
        # 64512-frame blocks): close, and the same cuts
        assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-6
        assert [p.start for p in pieces] == [round(o * 16000) for _, o in theirs]
        assert all(np.abs(p.wav - t).max() < 1e-6 for p, (t, _) in zip(pieces, theirs))
    else:
        assert np.array_equal(got, ref), (got.shape, ref.shape)
        assert_same_pieces([(p.wav, p.start_s) for p in pieces], theirs)
    assert pieces[-1].start + pieces[-1].length == ref.size
