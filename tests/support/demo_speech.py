"""The demo model's speech: English sentences over a fixed vocabulary, spoken by espeak-ng.

One place for what tools/train_demo.py trains on and what bench/demo_wer.py and tests/test_demo.py
test on: the word lists, a seeded sentence generator, the voices (TEST_VOICE is never used in
training), and synthesis: WAV files through the espeak-ng command, or samples with phoneme times
through its library (training).
Numbers are spoken and written as words, so a clip's text is exactly what was said.
"""
from __future__ import annotations

import random
import re
import subprocess

import numpy as np

NOUNS = """apple bag ball bank bed bell bike bird boat book bottle box boy bread bridge brother bus cake
car card cat chair child city clock coat cup day desk dog door dress egg eye face farm father field fish
floor flower friend game garden girl glass hand hat head hill horse house island key kitchen lake lamp
letter light map market milk mother mountain night nose office orange page paper park pen pencil phone
picture plane plate river road room school sea ship shirt shoe shop sister song star station stone
street student sun table teacher tea ticket tower town train tree truck water window word year""".split()
PLURALS = {"box": "boxes", "bus": "buses", "child": "children", "city": "cities", "dress": "dresses",
           "fish": "fish", "glass": "glasses"}
VERBS = [("bring", "brought"), ("buy", "bought"), ("carry", "carried"), ("clean", "cleaned"),
         ("close", "closed"), ("cook", "cooked"), ("draw", "drew"), ("drive", "drove"), ("find", "found"),
         ("fix", "fixed"), ("give", "gave"), ("hold", "held"), ("keep", "kept"), ("leave", "left"),
         ("lift", "lifted"), ("like", "liked"), ("move", "moved"), ("need", "needed"), ("open", "opened"),
         ("paint", "painted"), ("push", "pushed"), ("read", "read"), ("sell", "sold"), ("send", "sent"),
         ("show", "showed"), ("take", "took"), ("throw", "threw"), ("wash", "washed"), ("watch", "watched"),
         ("want", "wanted"), ("make", "made"), ("see", "saw"), ("use", "used"), ("pick", "picked"),
         ("check", "checked"), ("count", "counted"), ("visit", "visited")]
ADJECTIVES = """big small old new red blue green yellow black white brown long short hot cold warm
happy sad quiet loud clean dirty heavy light dark bright fast slow good bad nice strong soft hard tall
young empty full cheap rich early late sweet fresh""".split()
NAMES = """Anna Ben Carl David Emma Frank Grace Henry Jack Kate Laura Mike Nora Oscar Paul Rose Sam
Tom Lucy Peter""".split()
PLACES = ["the park", "the station", "the market", "the school", "the office", "the river", "the city",
          "the garden", "the shop", "the bank", "the farm", "the beach", "the library", "the hospital",
          "home", "work"]
DAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
MONTHS = "January February March April May June July August September October November December".split()
TIMES = ["today", "tomorrow", "yesterday", "last week", "next week", "this morning", "in the evening",
         "at night", "every day", "after lunch", "before dinner", "soon", "again", "later"]
PREPS = "on in under near behind next to above below from into".split()
OTHER = """the a and but or so because if then when where what who why how this that these those it
is was are were will can could should would must may not very too also only just all some many much
more most few every each no yes here there now always never often sometimes please thank you hello
goodbye i we they he she my our your their his her me us them have has had do does did go went come
came get got put say said tell told ask asked think thought know knew call called play played work
worked walk walked run ran sit sat stand stood eat ate drink drank sleep slept write wrote sing sang
look looked help helped stop stopped start started wait waited about over up down out off""".split()
ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()

# espeak-ng voices: an accent and a voice variant. TEST_VOICE's variant is never used in training.
ACCENTS = ["en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-gb-x-rp", "en-029",
           "en-us-nyc"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f4", "f5", "Andy", "Annie", "david",
            "john", "linda", "steph", "robert", "paul", "max", "edward", "quincy", "michel", "aunty",
            # more voices (issue 14): espeak-ng's other human-sounding variants (no whisper, robot or effects)
            "m8", "adam", "Alex", "Alicia", "Andrea", "benjamin", "caleb", "ed", "Gene", "gustave", "iven",
            "Jacky", "Lee", "Mario", "Michael", "Mike", "rob", "shelby", "travis", "victor", "zac", "grandma",
            "anika", "belinda", "edward2", "steph2"]
TEST_VOICE = "en-us+f3"
SPEED = 160   # espeak-ng words per minute of the test sets (bench/demo_wer.py, tests/test_demo.py)
TEST_SEED = 7919   # the held-out sentences' stream; training skips the first N_HELD_OUT of it
N_HELD_OUT = 500
SAMPLE_TEXT = "Anna and Tom went to the station on Friday."  # the packaged sample.wav (not trained on)


def plural(noun: str) -> str:
    return PLURALS.get(noun, noun + "s")


def number_words(n: int) -> str:
    """0..9999 in words, British style ("three hundred and five")."""
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    rest = n % 1000
    head = number_words(n // 1000) + " thousand"
    if rest == 0:
        return head
    return head + (" and " if rest < 100 else " ") + number_words(rest)


def all_words() -> list[str]:
    words = set(NOUNS) | {plural(n) for n in NOUNS} | {w for v in VERBS for w in v} | set(ADJECTIVES)
    words |= set(NAMES) | set(DAYS) | set(MONTHS) | set(OTHER) | set(ONES) | set(TENS[2:])
    words |= {w for p in PLACES + TIMES + PREPS for w in p.split()} | {"hundred", "thousand"}
    return sorted(words)


def _number(r: random.Random) -> str:
    return number_words(r.choice([r.randint(0, 20), r.randint(21, 99), r.randint(100, 999),
                                  r.randint(1000, 9999)]))


DIGITS, SALAD, KINDS = 7, 8, 11   # kind DIGITS (one in eleven): a bare digit string ("five four nine five
# zero"); kinds SALAD.. (three in eleven): random words; the others are templates


def kind_name(kind: int) -> str:
    return "templates" if kind < DIGITS else "digit strings" if kind == DIGITS else "random words"


def digit_string(r: random.Random) -> str:
    return " ".join(r.choice(ONES[:10]) for _ in range(r.randint(3, 10)))


def _sentence_words(r: random.Random) -> tuple[int, str]:
    """(kind, words): kinds 0..6 are templates, DIGITS a digit string, SALAD.. random words."""
    n, a, v, t = r.choice(NOUNS), r.choice(ADJECTIVES), r.choice(VERBS), r.choice(TIMES)
    kind = r.randrange(KINDS)
    if kind == 0:
        return kind, f"the {a} {n} is {r.choice(PREPS)} the {r.choice(NOUNS)}"
    if kind == 1:
        return kind, f"{r.choice(NAMES)} {v[1]} {_number(r)} {plural(n)} {t}"
    if kind == 2:
        return kind, f"please {v[0]} the {a} {n} {t}"
    if kind == 3:
        return kind, "my number is " + " ".join(r.choice(ONES[:10]) for _ in range(r.randint(3, 7)))
    if kind == 4:
        return kind, f"{r.choice(NAMES)} and {r.choice(NAMES)} went to {r.choice(PLACES)} on {r.choice(DAYS)}"
    if kind == 5:
        return kind, f"we have {_number(r)} {plural(n)} and {_number(r)} {plural(r.choice(NOUNS))}"
    if kind == 6:
        return kind, f"the meeting is on {r.choice(MONTHS)} {r.choice(ONES[1:] + TENS[2:4])} at {r.choice(ONES[1:13])}"
    if kind == DIGITS:
        return kind, digit_string(r)
    words = all_words()  # word salad: the text gives no hint, only the sound does
    return kind, " ".join(r.choice(words) for _ in range(r.randint(3, 10)))


def capitalized(words: str) -> str:
    return words[0].upper() + words[1:] + "."


def sentence(r: random.Random) -> str:
    return capitalized(_sentence_words(r)[1])


def sentences(seed: int, n: int, exclude: set[str] = frozenset()) -> list[str]:
    r = random.Random(seed)
    out = []
    while len(out) < n:
        s = sentence(r)
        if s not in exclude:
            out.append(s)
    return out


def held_out(n: int = N_HELD_OUT) -> list[str]:
    """Sentences that training never uses (tools/train_demo.py excludes all N_HELD_OUT)."""
    assert n <= N_HELD_OUT
    return sentences(TEST_SEED, N_HELD_OUT)[:n]


def held_out_kinds(n: int = N_HELD_OUT) -> list[str]:
    """For each of held_out(n): "templates", "digit strings" or "random words" (kind_name)."""
    r = random.Random(TEST_SEED)
    return [kind_name(_sentence_words(r)[0]) for _ in range(n)]


class Espeak:
    """libespeak-ng in this process: the samples `espeak-ng -w` writes (less its trailing silence) and
    where each phoneme starts, for training labels. Synchronous mode; not thread-safe."""

    _WORD, _END, _PHONEME = 1, 5, 7

    def __init__(self):
        import ctypes
        import ctypes.util

        C = ctypes

        class Id(C.Union):
            _fields_ = [("number", C.c_int), ("name", C.c_char_p), ("string", C.c_char * 8)]

        class Event(C.Structure):  # espeak_EVENT (speak_lib.h)
            _fields_ = [("type", C.c_int), ("unique_identifier", C.c_uint), ("text_position", C.c_int),
                        ("length", C.c_int), ("audio_position", C.c_int), ("sample", C.c_int),
                        ("user_data", C.c_void_p), ("id", Id)]

        self.lib = C.CDLL(C.util.find_library("espeak-ng") or "libespeak-ng.so.1")
        # AUDIO_OUTPUT_SYNCHRONOUS, default buffer, default data, espeakINITIALIZE_PHONEME_EVENTS
        self.sample_rate = self.lib.espeak_Initialize(2, 0, None, 1)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, bytes]] = []

        @C.CFUNCTYPE(C.c_int, C.POINTER(C.c_short), C.c_int, C.POINTER(Event))
        def callback(wav, n, events):
            if wav and n > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
            i = 0
            while events[i].type != 0:
                e = events[i]
                self._events.append((e.type, e.sample, e.text_position,
                                     e.id.string if e.type == self._PHONEME else b""))
                i += 1
            return 0

        self._callback = callback
        self.lib.espeak_SetSynthCallback(callback)

    def synth(self, text: str, voice: str, speed: int = 165, pitch: int = 50):
        """(int16 samples at self.sample_rate, [(phoneme, start sample, text position)], end sample).

        The text position (1-based character) is the start of the word the phoneme belongs to
        (espeak-ng may join a short word to its neighbour: "in the" is then one word)."""
        self._chunks.clear()
        self._events.clear()
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(1, speed, 0)  # espeakRATE
        self.lib.espeak_SetParameter(3, pitch, 0)  # espeakPITCH
        data = text.encode()
        self.lib.espeak_Synth(data, len(data) + 1, 0, 1, 0, 1, None, None)  # POS_CHARACTER, espeakCHARS_UTF8
        wav = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        phonemes = [(name.decode(), s, p) for t, s, p, name in self._events if t == self._PHONEME]
        end = max([s for t, s, _, _ in self._events if t == self._END] or [len(wav)])
        return wav, phonemes, end

    def synth_words(self, text: str, voice: str, speed: int = 165, pitch: int = 50):
        """(int16 samples at self.sample_rate, spans, end sample): synth() and, for each whitespace-separated
        word of text, its (start, end) sample by espeak-ng's own word events (the demo aligner's labels).

        A word starts at its word event and ends at the next word's event or, sooner, at a pause (a '_'
        phoneme) after its start; the last word at the end of speech. espeak-ng sometimes speaks two
        words as one ("in the") and reports one event: the joined words' inner boundary is unknown (None),
        the group's outer ones are its own."""
        wav, phonemes, end = self.synth(text, voice, speed, pitch)
        events = {p: s for t, s, p, _ in self._events if t == self._WORD and p > 0}
        firsts = [i + 1 for i, ch in enumerate(text) if not ch.isspace() and (i == 0 or text[i - 1].isspace())]
        starts = [events.get(p) for p in firsts]
        stops = sorted({s for s in starts if s is not None} | {s for n, s, _ in phonemes if n.startswith("_")})
        out, group_end = [], None
        for i, s0 in enumerate(starts):
            if s0 is not None:
                group_end = min([x for x in stops if x > s0] + [end])
            last_of_group = i + 1 == len(starts) or starts[i + 1] is not None
            out.append((s0, group_end if last_of_group else None))
        return wav, out, end


def write_wav(path, text: str, voice: str, speed: int = 165, pitch: int = 50) -> None:
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
                   check=True)


def normalize(text: str) -> str:
    """Lower case, punctuation out (apostrophes kept), single spaces: how the demo's WER compares texts."""
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def wer(refs: list[str], hyps: list[str]) -> float:
    """Word error rate over a set (jiwer), after normalize()."""
    import jiwer

    return jiwer.wer([normalize(r) for r in refs], [normalize(h) for h in hyps])


def espeak_word_times(texts: list[str], voice: str, speed: int = SPEED):
    """[(samples as float at the espeak-ng rate, rate, [(start s | None, end s | None)])] per text."""
    es = Espeak()
    out = []
    for text in texts:
        wav, spans, _ = es.synth_words(text, voice, speed)
        sr = es.sample_rate
        out.append((wav.astype(np.float32) / 32768, sr,
                    [tuple(None if x is None else x / sr for x in s) for s in spans]))
    return out


def boundary_errors(words, spans) -> list[tuple[str, float]]:
    """(kind, |aligner - espeak-ng| in s) for every boundary espeak-ng reports."""
    if len(words) != len(spans):
        raise ValueError(f"{len(words)} aligned words for {len(spans)} spoken ones")
    out = []
    for w, (a, b) in zip(words, spans):
        if a is not None:
            out.append(("start", abs(w.start - a)))
        if b is not None:
            out.append(("end", abs(w.end - b)))
    return out


def pink(n: int, rng) -> np.ndarray:
    """n samples of pink (1/f) noise from a numpy Generator, peak 1.0."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return (x / np.abs(x).max()).astype(np.float32)
