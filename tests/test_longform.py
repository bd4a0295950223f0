"""Long audio: streamed decoding/resampling and piece cuts equal the official ones; segments, subtitles,
batches that survive a kill, and memory that does not grow with the recording's length."""
from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import SENTENCES, espeak
from asrgguf import longform as lf
from asrgguf import subtitles

ROOT = Path(__file__).resolve().parents[1]
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")


def official():
    from qwen_asr.inference import utils

    return utils


def assert_same_pieces(ours, theirs):
    assert len(ours) == len(theirs)
    for (a, oa), (b, ob) in zip(ours, theirs):
        assert a.dtype == np.float32 and np.array_equal(a, b)
        assert abs(oa - ob) < 1e-6


@pytest.fixture(scope="module")
def clips(data_dir):
    """The five test sentences as 22.05 kHz espeak clips, read as float32."""
    out = []
    for i, s in enumerate(SENTENCES):
        p = espeak(data_dir / f"sent{i}.wav", s)
        out.append(sf.read(p, dtype="float32")[0])
    return out


def speech_with_silences(clips, seconds: float, sr: int = 22050, seed: int = 0) -> np.ndarray:
    """Speech clips separated by 0.2-2.5 s of faint noise, up to `seconds` long."""
    rng = np.random.default_rng(seed)
    parts, n, want = [], 0, int(seconds * sr)
    while n < want:
        c = clips[int(rng.integers(len(clips)))] * float(rng.uniform(0.3, 1.0))
        gap = (rng.standard_normal(int(rng.uniform(0.2, 2.5) * sr)) * 1e-3).astype(np.float32)
        parts += [c.astype(np.float32), gap]
        n += len(c) + len(gap)
    return np.concatenate(parts)[:want]


# --------------------------------------------------------------------------- cutting
@pytest.mark.parametrize("max_sec", [10.0, 13.7, 30.0])
@pytest.mark.parametrize("block", [None, 1234, 16000 * 7])
def test_split_matches_official_synthetic(clips, max_sec, block):
    import librosa

    wav = librosa.resample(speech_with_silences(clips, 95, seed=int(max_sec)), orig_sr=22050, target_sr=16000)
    ours = lf.split_array(wav, max_sec, block=block)
    assert_same_pieces(ours, official().split_audio_into_chunks(wav, 16000, max_sec))
    assert len(ours) >= 3


def test_split_edge_cases():
    rng = np.random.default_rng(3)
    short = rng.standard_normal(16000 * 9).astype(np.float32) * 0.1
    assert_same_pieces(lf.split_array(short, 10.0), official().split_audio_into_chunks(short, 16000, 10.0))
    # a silent stretch just before the end: the tail is shorter than 0.5 s and gets zero-padded
    x = rng.standard_normal(int(16000 * 10.3)).astype(np.float32) * 0.1
    x[int(16000 * 9.9):int(16000 * 10.0)] = 0.0
    ours = lf.split_array(x, 10.0, block=999)
    assert_same_pieces(ours, official().split_audio_into_chunks(x, 16000, 10.0))
    assert len(ours) == 2 and len(ours[1][0]) == 8000
    # all silence: ties broken as numpy's argmin breaks them
    z = np.zeros(16000 * 25, np.float32)
    assert_same_pieces(lf.split_array(z, 10.0, block=5000), official().split_audio_into_chunks(z, 16000, 10.0))


def _write(path: Path, wav: np.ndarray, sr: int, **kw) -> Path:
    sf.write(path, wav, sr, **kw)
    return path


@pytest.fixture(scope="module")
def real_files(data_dir):
    """Real read speech (LibriVox clips) with silences, stored as 16 kHz wav, 44.1 kHz stereo flac, mp3,
    and float wav whose peak is above 1.0."""
    import librosa

    if not LIBRIVOX.is_dir():
        pytest.skip("pocketsphinx-testdata is not installed")
    parts = []
    for p in sorted(LIBRIVOX.glob("*.wav")):
        w, sr = sf.read(p, dtype="float32")
        assert sr == 16000
        parts += [w, np.zeros(int(0.7 * sr), np.float32)]
    wav16 = np.concatenate(parts)
    st = librosa.resample(wav16, orig_sr=16000, target_sr=44100)
    stereo = np.stack([st, st * 0.5], axis=1)
    return {
        "wav16": _write(data_dir / "real16.wav", wav16, 16000, subtype="PCM_16"),
        "flac44": _write(data_dir / "real44.flac", stereo, 44100, subtype="PCM_24"),
        "mp3": _write(data_dir / "real.mp3", st * 0.8, 44100, format="MP3"),
        "float_hot": _write(data_dir / "hot.wav", stereo * 1.7, 44100, subtype="FLOAT"),
    }


@pytest.mark.parametrize("kind", ["wav16", "flac44", "mp3", "float_hot"])
def test_stream_and_pieces_match_official_on_real_audio(real_files, kind):
    path = str(real_files[kind])
    ref = official().normalize_audio_input(path)
    assert ref.size > 16000 * 25  # about 28 s: three cuts at 10 s
    got = np.concatenate(list(lf.stream_16k(path, block_frames=1152 * 7 if kind != "mp3" else lf.BLOCK_FRAMES)))
    pieces = list(lf.iter_pieces(lf.stream_16k(path), 10.0))
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


# --------------------------------------------------------------------------- transcription
@pytest.fixture(scope="module")
def tr(gguf_pair, ck_gqa):
    from asrgguf import Transcriber

    dec, mm = gguf_pair(ck_gqa, "q8_0")
    t = Transcriber.from_gguf(dec, mm, threads=2)
    yield t
    t.close()


def test_segments_cover_the_audio(tr, real_files):
    path = real_files["flac44"]
    n = official().normalize_audio_input(str(path)).size
    res = lf.transcribe_long(tr, path, max_new_tokens=6, piece_seconds=10.0)
    segs = res.segments
    assert len(segs) >= 4 and segs[0].start == 0.0
    for a, b in zip(segs, segs[1:]):
        assert a.end == b.start and a.start < a.end  # exact: both are the cut's sample / 16000
    assert segs[-1].end == n / 16000 == res.duration
    for s in segs:
        times = [(x["start"], x["end"]) for x in s.sentences]
        flat = [t for ab in times for t in ab]
        assert flat == sorted(flat) and (not times or (times[0][0] == round(s.start, 3)
                                                        and times[-1][1] == round(s.end, 3)))
    d = json.loads(subtitles.to_json(res))
    assert d["timings"]["pieces"] == len(segs) and d["loops_stopped"] == 0 and len(d["segments"]) == len(segs)
    # one piece per segment, each decoded as Transcriber.transcribe decodes that piece
    one = tr.transcribe(lf.split_array(official().normalize_audio_input(str(path)), 10.0)[1][0],
                        max_new_tokens=6)
    assert segs[1].token_ids == one.token_ids and segs[1].text == one.text


def test_parallel_pieces_decode_as_the_official_does_each(gguf_pair, ck_gqa, real_files):
    """Pieces decoded as parallel sequences of one llama.cpp context (groups of 3, and a remainder):
    with the f32 pair each piece's ids equal the official package's for that piece alone, in order."""
    from asrgguf import Transcriber
    from reference import official_model, official_tokens

    path = str(real_files["flac44"])
    theirs = official().split_audio_into_chunks(official().normalize_audio_input(path), 16000, 10.0)
    assert len(theirs) % 3 != 0 and len(theirs) > 3
    dec, mm = gguf_pair(ck_gqa, "f32")
    t = Transcriber.from_gguf(dec, mm, threads=2)
    try:
        res = lf.transcribe_long(t, path, max_new_tokens=24, piece_seconds=10.0, parallel=3)
    finally:
        t.close()
    model = official_model(str(ck_gqa))
    assert [round(s.start * 16000) for s in res.segments] == [round(o * 16000) for _, o in theirs]
    for seg, (wav, _) in zip(res.segments, theirs):
        assert seg.token_ids == official_tokens(model, wav, max_new_tokens=24)
    assert res.timings["generated_tokens"] == sum(len(s.token_ids) for s in res.segments)


def _fake_result(texts):
    segs, t = [], 0.0
    for i, tx in enumerate(texts):
        s = lf.Segment(i, t, t + 28.5, tx, "English", tx, [])
        s.sentences = lf.sentence_times(tx, s.start, s.end)
        segs.append(s)
        t += 28.5
    return lf.LongResult("x.wav", "English", lf.join_texts(texts), segs, {"audio_seconds": t}, {})


def test_srt_and_vtt_parse():
    import srt
    import webvtt

    res = _fake_result(["Hello there. This is a test of subtitles, with a long sentence that certainly needs "
                        "to be wrapped over more than two lines because it goes on and on and on! Short?",
                        "", "今天天气很好。我们去公园吧！", "No punctuation at all here"])
    subs = list(srt.parse(subtitles.to_srt(res)))
    vtt = webvtt.from_buffer(io.StringIO(subtitles.to_vtt(res)))
    assert len(subs) == len(vtt.captions) == len(subtitles.cues(res)) >= 7
    starts = [s.start.total_seconds() for s in subs]
    ends = [s.end.total_seconds() for s in subs]
    assert starts == sorted(starts) and all(a <= b for a, b in zip(starts, ends))
    assert starts[0] == 0.0 and ends[-1] == pytest.approx(4 * 28.5)
    assert [c.text for c in vtt.captions] == [s.content for s in subs]
    assert res.text.startswith("Hello there.") and "Short? 今天" not in res.text and "Short?今天" in res.text


def test_join_texts():
    assert lf.join_texts(["Hello world.", "Next one", "", "下一个", "句子。", "End"]) == \
        "Hello world. Next one下一个句子。End"
    assert lf.merge_languages(["English", "", "English", "Chinese", "English"]) == \
        official().merge_languages(["English", "", "English", "Chinese", "English"])


# --------------------------------------------------------------------------- batches
def cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "asrgguf.cli", *map(str, args)], capture_output=True, text=True,
                          **kw)


def test_batch_killed_and_restarted(gguf_pair, ck_gqa, clips, tmp_path):
    dec, _ = gguf_pair(ck_gqa, "q8_0")
    src = tmp_path / "in"
    src.mkdir()
    for i in range(10):
        _write(src / f"rec{i:02d}.wav", speech_with_silences(clips, 40, seed=i), 22050)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "asrgguf.cli", "run", "--gguf", str(dec), str(src), "--output-dir", str(out),
            "--format", "json", "--max-new-tokens", "4", "--piece-seconds", "10", "--threads", "2"]
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (out.is_dir() and list(out.glob("*.json"))):
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    first = sorted(out.glob("*.json"))
    assert 1 <= len(first) < 10, "the batch should have been killed in the middle"
    for f in first:  # whatever exists is whole
        json.loads(f.read_text())
    (out / ".rec09.json.abc123.part").write_text('{"half')  # as a kill mid-write would leave
    r = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{10 - len(first)} done, {len(first)} skipped, 0 failed" in r.stderr
    done = sorted(out.iterdir())
    assert [f.name for f in done] == [f"rec{i:02d}.json" for i in range(10)]  # no temp files left
    for f in done:
        d = json.loads(f.read_text())
        assert d["audio"] == str(src / f.with_suffix(".wav").name) and d["segments"][-1]["end"] > 35


# --------------------------------------------------------------------------- memory
_RSS_SCRIPT = r"""
import json, resource, sys
from asrgguf import Transcriber
from asrgguf.longform import transcribe_long
tr = Transcriber.from_gguf(sys.argv[1], threads=2)
r = transcribe_long(tr, sys.argv[2], max_new_tokens=4, piece_seconds=30.0)
print(json.dumps({"rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "seconds": r.duration,
                  "pieces": len(r.segments), "starts": [s.start for s in r.segments],
                  "ends": [s.end for s in r.segments], "wall": r.timings["wall"]}))
"""


def test_long_recording_in_bounded_memory(gguf_pair, ck_gqa, clips, tmp_path):
    """25 minutes (22.05 kHz: resampled, and peak-scanned first) in about the memory of 2 minutes."""
    dec, _ = gguf_pair(ck_gqa, "q8_0")
    short = _write(tmp_path / "short.wav", speech_with_silences(clips, 120, seed=1), 22050)
    long_ = _write(tmp_path / "long.wav", speech_with_silences(clips, 25 * 60, seed=2), 22050)
    res = {}
    for name, path in (("short", short), ("long", long_)):
        r = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(dec), str(path)], capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        res[name] = json.loads(r.stdout.splitlines()[-1])
    lg = res["long"]
    assert lg["seconds"] == pytest.approx(25 * 60, abs=1e-3) and lg["pieces"] >= 45
    assert lg["starts"][0] == 0.0 and lg["ends"][-1] == lg["seconds"]
    assert all(e == s for e, s in zip(lg["ends"], lg["starts"][1:]))
    # a whole-file load would add > 150 MB here (25 min at 22.05 kHz and 16 kHz, float32)
    assert lg["rss_kb"] <= res["short"]["rss_kb"] * 1.10, res
    # and the pieces are the official ones
    ref = official().normalize_audio_input(str(long_))
    theirs = official().split_audio_into_chunks(ref, 16000, 30.0)
    assert [round(o * 16000) for _, o in theirs] == [round(s * 16000) for s in lg["starts"]]
