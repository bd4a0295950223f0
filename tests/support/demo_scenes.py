"""Real-shaped audio for the demo model (issue 25): pauses, silence, noise, several voices, no speech.

Speech is made of "chunks": pieces of a text that espeak-ng speaks on their own (a whole sentence,
a few of its words, or a single word), then laid out in time with silence between them (arrange) and
mixed with background noise (add_noise: white, pink, brown or a music-like noise, at a signal-to-noise
ratio). Training (tools/train_demo.py, tools/train_demo_aligner.py) and the test sets per condition
(bench/demo_wer.py, bench/demo_align_accuracy.py --condition) use the same functions; the test sets
speak only held-out sentences in the held-out voice (demo_speech.TEST_VOICE, never trained on).
A chunk's text is exactly a piece of the clip's text (the pieces joined by spaces), so the words'
times (espeak-ng's word events) and the phonemes of each chunk, shifted by where it was put, are
those of the clip.
"""
from __future__ import annotations

import random

import numpy as np

from . import demo_speech as speech

RATE = 16000
NOISES = ("white", "pink", "brown", "music")
CONDITIONS = ("continuous", "pauses", "noise", "isolated")
TEST_SNRS = (20.0, 15.0, 10.0)      # the "noise" test set: each clip one of these, the noise kinds in turn


def colored(n: int, rng: np.random.Generator, power: float) -> np.ndarray:
    """n samples of noise whose power falls as 1/f**power (0 white, 1 pink, 2 brown), peak 1.0."""
    if power == 0:
        x = rng.standard_normal(n)
    else:
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        spec[0] = 0.0
        x = np.fft.irfft(spec / f ** (power / 2), n)
    return (x / (np.abs(x).max() + 1e-12)).astype(np.float32)


def music(n: int, rng: np.random.Generator, rate: int = RATE) -> np.ndarray:
    """n samples of a music-like noise, peak 1.0: notes of 0.12-0.6 s from a pentatonic scale (110-880 Hz),
    one to three at a time, each with a few decaying harmonics and an attack-decay envelope, and now and
    then a drum-like burst of filtered noise."""
    x = np.zeros(n, np.float64)
    scale = [0, 2, 4, 7, 9]
    at = 0
    while at < n:
        dur = int(rng.uniform(0.12, 0.6) * rate)
        t = np.arange(min(dur, n - at)) / rate
        env = np.minimum(1.0, t / 0.01) * np.exp(-t * rng.uniform(2, 8))
        for _ in range(int(rng.integers(1, 4))):
            semi = 12 * int(rng.integers(0, 3)) + scale[int(rng.integers(0, 5))]
            f0 = 110.0 * 2 ** (semi / 12)
            tone = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) / k ** 1.5 for k in range(1, 5))
            x[at:at + len(t)] += env * tone * rng.uniform(0.3, 1.0)
        if rng.random() < 0.3:
            m = min(int(0.08 * rate), len(t))
            x[at:at + m] += colored(m, rng, 1.0) * np.exp(-np.arange(m) / (0.02 * rate)) * 1.5
        at += len(t)
    return (x / (np.abs(x).max() + 1e-12)).astype(np.float32)


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "music":
        return music(n, rng)
    return colored(n, rng, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind])


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def add_noise(x: np.ndarray, kind: str, snr_db: float, rng: np.random.Generator,
              speech_rms: float | None = None) -> np.ndarray:
    """x plus noise of a kind at snr_db below the speech's RMS (speech_rms, or x's over its louder half)."""
    if speech_rms is None:
        loud = np.abs(x) > 0.05 * (np.abs(x).max() + 1e-12)
        speech_rms = rms(x[loud]) if loud.any() else rms(x)
    v = noise(kind, len(x), rng)
    return (x + v * (speech_rms * 10 ** (-snr_db / 20) / (rms(v) + 1e-12))).astype(np.float32)


def no_speech(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A clip without speech: digital silence, or one of the noises at -70..-20 dB RMS (its transcript is empty)."""
    n = int(seconds * RATE)
    if rng.random() < 0.15:
        return np.zeros(n, np.float32)
    v = noise(NOISES[int(rng.integers(0, len(NOISES)))], n, rng)
    return (v * (10 ** (rng.uniform(-70, -20) / 20) / (rms(v) + 1e-12))).astype(np.float32)


def split_words(text: str, rng: random.Random, how: str) -> list[str]:
    """text as chunks: "whole" (one), "words" (each word), "phrases" (2 to 4 pieces at word boundaries)."""
    words = text.split()
    if how == "whole" or len(words) == 1:
        return [text]
    if how == "words":
        return words
    k = min(len(words), rng.randint(2, 4))
    cuts = sorted(rng.sample(range(1, len(words)), k - 1))
    return [" ".join(words[a:b]) for a, b in zip([0] + cuts, cuts + [len(words)])]


def arrange(chunks: list[np.ndarray], gaps: list[int], lead: int, trail: int) -> tuple[np.ndarray, list[int]]:
    """The chunks (float32) in a row, gaps[i] samples of silence before chunk i+1, lead and trail around:
    (samples, where each chunk starts)."""
    parts, offsets, at = [np.zeros(lead, np.float32)], [], lead
    for i, c in enumerate(chunks):
        if i:
            parts.append(np.zeros(gaps[i - 1], np.float32))
            at += gaps[i - 1]
        offsets.append(at)
        parts.append(c.astype(np.float32))
        at += len(c)
    parts.append(np.zeros(trail, np.float32))
    return np.concatenate(parts), offsets


def fit_gaps(lengths: list[int], gaps: list[int], room: int) -> list[int]:
    """gaps shrunk (all alike, none under 0.1 s) so that lengths + gaps fit in room samples, where they can."""
    over = sum(lengths) + sum(gaps) - room
    if over <= 0 or not gaps:
        return gaps
    scale = max(0.0, 1 - over / sum(gaps))
    return [max(int(0.1 * RATE), int(g * scale)) for g in gaps]


# --- held-out test sets per condition (bench/demo_wer.py, bench/demo_align_accuracy.py)
def test_texts(condition: str, n: int) -> list[str]:
    """The texts of a test set: the first n held-out sentences, or (isolated) n lists of 3 to 6 vocabulary
    words drawn from the test seed (TEST_SEED + 1)."""
    if condition != "isolated":
        return speech.held_out(n)
    r, words = random.Random(speech.TEST_SEED + 1), speech.all_words()
    return [speech.capitalized(" ".join(r.choice(words) for _ in range(r.randint(3, 6)))) for _ in range(n)]


def test_set(condition: str, n: int, voice: str = speech.TEST_VOICE, speed: int = speech.SPEED):
    """[(float32 samples at 16 kHz, text, [(start s | None, end s | None)] per word)] for a condition:
    continuous: held-out sentences as espeak-ng says them; pauses: each cut into 2-4 pieces spoken apart,
    0.1-2.5 s of silence between them and 0-1 s around; noise: continuous with white, pink, brown and
    music-like noise in turn at TEST_SNRS; isolated: 3-6 vocabulary words each said alone, 0.5-1.5 s apart.
    Seeded by the condition: the same clips every time."""
    from asrgguf.audio import prepare

    if condition not in CONDITIONS:
        raise ValueError(f"condition: one of {', '.join(CONDITIONS)}")
    es = speech.Espeak()
    r = random.Random(f"{speech.TEST_SEED}-{condition}")
    rng = np.random.default_rng(CONDITIONS.index(condition) + 1)
    out = []
    for k, text in enumerate(test_texts(condition, n)):
        how = {"pauses": "phrases", "isolated": "words"}.get(condition, "whole")
        chunks = split_words(text, r, how)
        wavs, spans = [], []
        for c in chunks:
            wav, sp, _ = es.synth_words(c, voice, speed)
            scale = RATE / es.sample_rate
            wavs.append(prepare(wav / 32768, es.sample_rate).astype(np.float32))
            spans.append([tuple(None if x is None else x * scale for x in s) for s in sp])
        lo, hi = (0.5, 1.5) if condition == "isolated" else (0.1, 2.5)
        gaps = [int(r.uniform(lo, hi) * RATE) for _ in chunks[1:]]
        lead, trail = ((int(r.uniform(0, 1) * RATE), int(r.uniform(0, 1) * RATE)) if condition == "pauses"
                       else (int(r.uniform(0.2, 0.6) * RATE), int(r.uniform(0.2, 0.6) * RATE))
                       if condition == "isolated" else (0, 0))
        x, offsets = arrange(wavs, gaps, lead, trail)
        words = [tuple(None if t is None else (t + off) / RATE for t in s) for sp, off in zip(spans, offsets) for s in sp]
        if condition == "noise":
            x = add_noise(x, NOISES[k % len(NOISES)], TEST_SNRS[(k // len(NOISES)) % len(TEST_SNRS)], rng)
        out.append((x, text, words))
    return out


# --- training material (tools/train_demo.py, tools/train_demo_aligner.py)
SPLITS = (("whole", 0.45), ("words", 0.25), ("phrases", 0.30))   # how a training sentence is spoken


def training_runs(items, seed: int, splits=SPLITS):
    """Each (text, voice, speed, pitch) item as a "run" of chunks one voice speaks apart (splits: the shares
    of the ways, SPLITS by default): returns (chunk items [(chunk text, voice, speed, pitch)] to synthesize,
    runs [[chunk index]], run texts)."""
    r = random.Random(seed + 3)
    chunk_items, runs, texts = [], [], []
    for text, voice, speed, pitch in items:
        x, how = r.random(), "phrases"
        for name, p in splits:
            if x < p:
                how = name
                break
            x -= p
        chunks = split_words(text, r, how)
        runs.append(list(range(len(chunk_items), len(chunk_items) + len(chunks))))
        chunk_items += [(c, voice, speed, pitch) for c in chunks]
        texts.append(text)
    return chunk_items, runs, texts


def scene_plan(runs, lengths, rng: np.random.Generator, max_len: int, p_more: float = 0.3):
    """One training clip's layout: (chunk indices, gaps, lead, trail) in samples. A run of several chunks
    gets 0.1-2.5 s between them; a whole sentence, one time in 1/p_more, is followed by one or two other
    sentences (other voices: several speakers in one clip) 0.2-2 s apart; silence around: 0-0.3 s, or
    (two in five) 0.3-2.5 s. Gaps shrink to fit max_len samples; extra sentences that do not fit are left out."""
    sec = lambda a, b: int(rng.uniform(a, b) * RATE)  # noqa: E731
    run = runs[int(rng.integers(0, len(runs)))]
    chunks = list(run)
    gaps = [sec(0.1, 2.5) for _ in run[1:]]
    if len(run) == 1 and rng.random() < p_more:
        for _ in range(int(rng.integers(1, 3))):
            other = runs[int(rng.integers(0, len(runs)))]
            if len(other) == 1:
                chunks.append(other[0])
                gaps.append(sec(0.2, 2.0))
    lead, trail = (sec(0.3, 2.5), sec(0.3, 2.5)) if rng.random() < 0.4 else (sec(0, 0.3), sec(0, 0.3))
    while True:
        room = max_len - lead - trail
        gaps = fit_gaps([lengths[c] for c in chunks], gaps, room)
        if sum(lengths[c] for c in chunks) + sum(gaps) <= room or len(chunks) == 1:
            break
        if len(chunks) > len(run):
            chunks.pop()
            gaps.pop()
        else:
            lead, trail = lead // 2, trail // 2
            if lead + trail < RATE // 10:
                break
    return chunks, gaps, lead, trail


def scene_sound(wavs: list[np.ndarray], gaps, lead, trail, rng: np.random.Generator, p_noise: float = 0.75):
    """The chunks (int16) laid out, a gain of -20..0 dB, and (p_noise) one of the noises at 5-40 dB SNR:
    (float32 samples, chunk offsets)."""
    gain = 10 ** (rng.uniform(-20, 0) / 20)
    x, offsets = arrange([w.astype(np.float32) / 32767 * gain for w in wavs], gaps, lead, trail)
    if rng.random() < p_noise:
        speech_rms = rms(np.concatenate(wavs).astype(np.float32) / 32767 * gain)
        x = add_noise(x, NOISES[int(rng.integers(0, len(NOISES)))], rng.uniform(5, 40), rng, speech_rms)
    return x, offsets
