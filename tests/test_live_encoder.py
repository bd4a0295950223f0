"""The incremental front end of live streams: log-mel as samples arrive, encoder windows cached.

Expected values come from `LogMel` / the offline `AudioEncoder` on the whole audio so far (both
checked against the official processor and encoder in test_features / test_encoder) and from the
official encoder itself (reference.py)."""
import numpy as np
import pytest
import soundfile as sf
import torch

from asrgguf.encoder import load_from_gguf, output_length
from asrgguf.features import LogMel
from asrgguf.live_encoder import LiveEncoder
from asrgguf.live_features import LiveLogMel
from support.reference import official_encoder, official_model, official_wav


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def blocks(wav, sizes):
    pos, i = 0, 0
    while pos < wav.size:
        n = sizes[i % len(sizes)]
        yield wav[pos:pos + n]
        pos, i = pos + n, i + 1


@pytest.fixture(scope="module")
def enc(ck_gqa, gguf_pair):
    return load_from_gguf(gguf_pair(ck_gqa, "f32")[1])


@pytest.fixture(scope="module")
def wav20(clip20):
    return official_wav(str(clip20))


def rising_peak(wav20):
    """9.5 s of faint noise, then speech 30 dB louder: the clip's peak (and the clamp's floor) rises
    after the first window is complete, so its cached features change."""
    rng = np.random.default_rng(5)
    quiet = (wav20[:16000 * 9 + 8000] * 0.03 + rng.standard_normal(16000 * 9 + 8000) * 1e-4).astype(np.float32)
    return np.concatenate([quiet, wav20[16000 * 3:16000 * 13]]).astype(np.float32)


def test_live_logmel_equals_logmel_at_every_block(wav20):
    """Any block sizes (1 sample to 0.4 s): the frames so far equal LogMel(samples so far), the clamp
    included, and each frame's STFT is computed once, except the last (at most 2) still in the padding."""
    lm, live = LogMel(), LiveLogMel()
    wav = wav20[:16000 * 6 + 123]
    pos, appends = 0, 0
    for b in blocks(wav, [1, 159, 160, 7, 1600, 201, 3333, 6400, 40]):
        live.append(b)
        pos, appends = pos + b.size, appends + 1
        if pos <= 200:
            assert live.n_frames == 0
            continue
        ref = lm(wav[:pos])
        got = live.features()
        assert got.shape == ref.shape == (128, pos // 160)
        assert float((got - ref).abs().max()) < 1e-6
        assert abs(live.peak - float(ref.max() * 4 - 4)) < 1e-5
    assert live.n_frames == wav.size // 160
    assert live.frames_computed <= live.n_frames + 2 * appends


def test_live_logmel_short_input():
    live = LiveLogMel()
    live.append(np.zeros(0, np.float32))
    live.append(np.full(200, 0.1, np.float32))
    assert live.n_frames == 0 and live.n_stable == 0
    live.append(np.full(1, 0.1, np.float32))
    assert live.n_frames == 1 and live.n_stable == 1
    with pytest.raises(ValueError, match=r"frames \[0, 2\) are outside the 1 frames so far"):
        live.raw(0, 2)


def test_cached_windows_equal_offline_encoder(enc, wav20):
    """20 s fed in 100-ms blocks, a step after each: cached windows + open window equal the offline
    encoder on the features of the audio so far (exact steps), and the final step equals the offline
    encoder on the whole clip. Work per step: the open window, plus a window when one completes."""
    live = LiveEncoder(enc)
    lm = LogMel()
    prev = np.zeros((0, enc.params.output_dim), np.float32)
    pos, checked = 0, 0
    completed_before = 0
    for b in blocks(wav20, [1600]):
        live.feed(b)
        pos += b.size
        st = live.step()
        new_windows = live.n_complete - completed_before
        completed_before = live.n_complete
        open_frames = st.n_frames - live.n_complete * 800
        assert st.frames_encoded == 800 * new_windows + max(open_frames, 0)
        assert st.frames_encoded <= 800 + max(open_frames, 0)
        assert st.embeddings.shape == (output_length(pos // 160), enc.params.output_dim)
        assert st.n_cached == 104 * live.n_complete
        k = st.changed_from
        assert k <= st.n_cached or k == prev.shape[0] == st.embeddings.shape[0]
        np.testing.assert_array_equal(st.embeddings[:k], prev[:k])
        prev = st.embeddings
        if st.exact and pos % 16000 == 0:   # once a second: against the offline encoder
            ref = enc(lm(wav20[:pos])).numpy()
            assert rel(st.embeddings, ref) < 1e-5, pos
            checked += 1
    assert checked >= 10
    fin = live.final()
    ref = enc(lm(wav20)).numpy()
    assert fin.exact and fin.embeddings.shape == ref.shape
    assert rel(fin.embeddings, ref) < 1e-5
    # each completed window encoded once: the rest of the work is open windows
    assert live.n_complete == wav20.size // 160 // 800 >= 2


def test_final_equals_official_encoder(enc, ck_gqa, clip20, wav20):
    """The official encoder (windowed, float32) on the whole clip against the live encoder's final."""
    ref = official_encoder(official_model(str(ck_gqa)), wav20)
    live = LiveEncoder(enc)
    for b in blocks(wav20, [4800]):
        live.feed(b)
        live.step()
    fin = live.final()
    assert fin.embeddings.shape == ref.shape
    assert rel(fin.embeddings, ref) < 1e-5


@pytest.mark.parametrize("refresh", [0, 1])
def test_rising_peak_makes_cached_window_stale(enc, wav20, refresh):
    """The clamp: a window cached under a lower peak is reported stale. refresh=0: partial steps keep
    it, refresh=1: a step re-encodes at most one; the final re-encodes those left and equals the
    offline encoder on the whole utterance."""
    wav = rising_peak(wav20)
    live = LiveEncoder(enc)
    lm = LogMel()
    seen_stale = False
    completed_before = 0
    for b in blocks(wav, [3200]):
        live.feed(b)
        st = live.step(refresh=refresh)
        new_windows, completed_before = live.n_complete - completed_before, live.n_complete
        open_frames = max(0, st.n_frames - live.n_complete * 800)
        assert len(st.refreshed) <= refresh
        assert st.frames_encoded <= 800 * (new_windows + len(st.refreshed)) + open_frames
        if st.stale or st.refreshed:
            seen_stale |= 0 in st.stale + st.refreshed
            if st.refreshed:
                assert st.changed_from == 104 * st.refreshed[0]
    assert seen_stale
    ref = enc(lm(wav)).numpy()
    part = live.step()   # nothing new: nothing encoded
    assert part.frames_encoded == 0 and part.exact == (not part.stale)
    if refresh == 0:
        assert part.stale[0] == 0 and rel(part.embeddings[:104], ref[:104]) > 1e-3
    else:
        assert part.stale == []   # caught up before the end
    fin = live.final()
    assert fin.exact and not fin.stale
    assert fin.frames_encoded == 800 * len(part.stale)
    assert fin.changed_from == (0 if part.stale else fin.embeddings.shape[0])
    assert rel(fin.embeddings, ref) < 1e-5
