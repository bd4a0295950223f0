#!/usr/bin/env python3
"""Train asrgguf's built-in demo model: a small Qwen3-ASR on espeak-ng speech (issues 6, 25).

Data: sentences over a fixed English vocabulary (tests/support/demo_speech.py, seeded; the held-out test
sentences and the sample's sentence excluded) spoken by espeak-ng with many accent/voice variants
(not TEST_VOICE), speeds and pitches. Since issue 25 a sentence is spoken whole, word by word or in 2-4
pieces (tests/support/demo_scenes.py), and each training clip is laid out from them: pauses of 0.1-2.5 s
between the pieces, one to three sentences of different voices in a row, 0-2.5 s of silence around,
a gain change and white, pink, brown or music-like noise at 5-40 dB SNR; and clips without speech
(silence or noise, 0.5-8 s, and one batch in seven a long one of 10-24 s: several encoder windows)
whose transcript is empty. Features are asrgguf.features.LogMel (the official extractor's values).
Model: the official Qwen3ASRForConditionalGeneration with a small config and its own byte-level
BPE vocabulary (Qwen2 pre-tokenizer, about 1k tokens) followed by Qwen3-ASR's added tokens.
Target: the official output `language English<asr_text>TEXT<|im_end|>` (then <|endoftext|>, see
AFTER_END) after the official chat prompt; the loss is on those assistant tokens only, plus two
per-frame losses on the encoder output that make it learn in minutes rather than hours: the
espeak-ng phoneme at each frame's centre (a training-only head) and the text token being spoken
there, through the model's own tied output head, so that audio frames come to look like the
embeddings of their words and the decoder learns to read them quickly. Phoneme times come from
espeak-ng's library, whose samples are the command's.
Export: the checkpoint (bfloat16 safetensors, tokenizer, processor files) and the GGUF pair that
`asrgguf quantize` makes from it (q8_0 decoder + f16 mmproj), and an espeak-ng sample WAV.

    nice -n 19 python tools/train_demo.py                 # the packaged model (see docs/demo.md)
    python tools/train_demo.py --steps 200 --clips 1500 --out /tmp/demo-smoke/qwen3-asr-demo
    python tools/train_demo.py --init asrgguf/data/demo/qwen3-asr-demo --lr 5e-4 ...   # fine-tune (issue 25)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import support.demo_scenes as scenes  # noqa: E402
import support.demo_speech as speech  # noqa: E402
from support.random_checkpoint import (_KNOWN_ADDED, AUDIO_COMMON, TEXT_COMMON, add_special_tokens, make_processor,  # noqa: E402
                               qwen2_tokenizer)

DEMO_DIR = ROOT / "asrgguf" / "data" / "demo"
MAX_SECONDS = 7.5           # a sentence: at most one encoder window (8 s)
MAX_SCENE = 16.0            # a training clip laid out from sentences and pieces with pauses (two windows)
LONG_NO_SPEECH = (10.0, 24.0)   # seconds of the long clips without speech (one batch in seven)
ENCODER_GROUP = 640         # encoder frames per call of the audio tower in training (its mask is dense)
N_BPE = 1024                # byte-level BPE tokens (256 bytes + merges)
FRAME_WEIGHT = 0.5          # the auxiliary per-frame losses (phoneme, word token) on the encoder output
PROMPT_WORDS = ["system", "user", "assistant", "language English", "language None"]
# <|endoftext|> after <|im_end|>: the official generate() stops only at the Qwen2 ids of these two
# (151645, 151643), so with this vocabulary Qwen3ASRModel.transcribe() runs on to max_new_tokens
# (512 by default); what it generates there must then be <|endoftext|>, which its decoding drops.
# Every answer ends with AFTER_END of them, and each step one clip of the batch is run again on its
# own with a tail of up to MAX_TAIL (loss on the tail only), so that it holds to the official limit
AFTER_END = 3
MAX_TAIL = 520
TAIL_EVERY_FINE_TUNE = 4    # a fine-tune (--init) keeps what its checkpoint learnt of the tail with it every 4th step


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- tokenizer and config
def make_tokenizer(corpus: list[str]):
    """Byte-level BPE trained on the corpus with Qwen2's pre-tokenizer, then Qwen3-ASR's added tokens."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, trainers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=N_BPE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    with tempfile.TemporaryDirectory() as tmp:
        tok = qwen2_tokenizer(*bpe.model.save(tmp))
    assert len(tok) == N_BPE, len(tok)
    return add_special_tokens(tok, [_KNOWN_ADDED[i] for i in sorted(_KNOWN_ADDED)])


def make_config(tok):
    from qwen_asr.core.transformers_backend import Qwen3ASRConfig
    from qwen_asr.inference.utils import SUPPORTED_LANGUAGES

    vocab = -(-len(tok) // 64) * 64
    audio = dict(AUDIO_COMMON, d_model=256, encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=1024,
                 output_dim=256, downsample_hidden_size=32)
    text = dict(TEXT_COMMON, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
                num_key_value_heads=2, head_dim=64, vocab_size=vocab, max_position_embeddings=4096,
                rope_scaling={"rope_type": "default", "mrope_section": [12, 10, 10], "interleaved": True,
                              "mrope_interleaved": True}, tie_word_embeddings=True)
    ids = tok.convert_tokens_to_ids
    thinker = dict(audio_config=audio, text_config=text, audio_token_id=ids("<|audio_pad|>"),
                   audio_start_token_id=ids("<|audio_start|>"), user_token_id=ids("user"), tie_word_embeddings=True)
    cfg = Qwen3ASRConfig(thinker_config=thinker, support_languages=list(SUPPORTED_LANGUAGES))
    cfg.architectures = ["Qwen3ASRForConditionalGeneration"]
    cfg.tie_word_embeddings = True
    return cfg


# --- data
def training_items(seed: int, n: int) -> list[tuple[str, str, int, int]]:
    """(text, voice, speed, pitch): sentences (the held-out ones and the sample's excluded) and, beside
    them, a fifth one to three random words (where the words' sounds are learnt first), a fifth 4 to 12
    random words and a tenth bare digit strings (where no context helps: only the sound tells them),
    in any voice but TEST_VOICE."""
    r = random.Random(seed + 1)
    voices = [f"{a}+{v}" for a in speech.ACCENTS for v in speech.VARIANTS]
    assert speech.TEST_VOICE.split("+")[1] not in speech.VARIANTS  # the test voice is never heard
    exclude = set(speech.held_out()) | {speech.SAMPLE_TEXT}
    words, extra = speech.all_words(), []
    for count, make in ((n // 5, lambda: " ".join(r.choice(words) for _ in range(r.randint(1, 3)))),
                        (n // 5, lambda: " ".join(r.choice(words) for _ in range(r.randint(4, 12)))),
                        (n // 10, lambda: speech.digit_string(r))):
        done = len(extra) + count
        while len(extra) < done:
            s = speech.capitalized(make())
            if s not in exclude:
                extra.append(s)
    texts = speech.sentences(seed, n - len(extra), exclude=exclude) + extra
    return [(t, r.choice(voices), r.randint(120, 210), r.randint(25, 75)) for t in texts]


class Clips:
    """16 kHz int16 clips and, per clip, its phonemes: class ids (espeak-ng's names; all pauses are one
    class, id 0), start samples and word positions in the text, and the sample where speech ends."""

    def __init__(self, wavs, phonemes, starts, positions, ends, names):
        self.wavs, self.phonemes, self.starts, self.positions = wavs, phonemes, starts, positions
        self.ends, self.names = ends, list(names)

    @classmethod
    def synthesize(cls, items, cache: Path) -> "Clips":
        from asrgguf.audio import prepare

        path = cache / f"clips-{hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]}.npz"
        if path.exists():
            with np.load(path) as z:
                split = lambda k: np.split(z[k], z[k + "_ends"][:-1])  # noqa: E731
                return cls(split("wav"), split("ph"), split("start"), split("pos"), z["end"], z["names"])
        es = speech.Espeak()
        check_library_matches_cli(es)
        names, cols = {"_": 0}, {"wav": [], "ph": [], "start": [], "pos": []}
        ends, scale = [], 16000 / es.sample_rate
        for text, voice, speed, pitch in items:
            wav, phon, end = es.synth(text, voice, speed, pitch)
            cols["wav"].append(np.round(prepare(wav / 32768, es.sample_rate) * 32767).astype(np.int16))
            cols["ph"].append(np.array([names.setdefault("_" if p[0] == "_" else p, len(names)) for p, _, _ in phon],
                                       np.int16))
            cols["start"].append(np.array([round(s * scale) for _, s, _ in phon], np.int32))
            cols["pos"].append(np.array([p for _, _, p in phon], np.int32))
            ends.append(round(end * scale))
        arrays = {"end": np.array(ends, np.int32), "names": np.array(sorted(names, key=names.get))}
        for k, v in cols.items():
            arrays[k], arrays[k + "_ends"] = np.concatenate(v), np.cumsum([len(x) for x in v])
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        return cls(cols["wav"], cols["ph"], cols["start"], cols["pos"], arrays["end"], arrays["names"])

    def frame_labels(self, i: int | None, lead: int, n_frames: int, tokens: list[tuple[int, int]]):
        """Per encoder frame (13 per 100 mel frames, 8 mel frames each) of clip i padded with `lead`
        samples in front: the phoneme at its centre (silence outside speech) and the text token spoken
        there (-100 outside speech): tokens = [(id, index of its last character)] of the text's words,
        each word's time (from its first phoneme to the next word's) shared equally by its tokens."""
        j = np.arange(n_frames)
        centre = ((j // 13) * 100 + (j % 13) * 8 + 4) * 160 - lead
        phones, toks = np.zeros(n_frames, np.int64), np.full(n_frames, -100, np.int64)
        if i is None:
            return phones, toks
        starts, pos, end = self.starts[i], self.positions[i], self.ends[i]
        k = np.searchsorted(starts, centre, side="right") - 1
        inside = (k >= 0) & (centre < end)
        phones[inside] = self.phonemes[i][k[inside]]
        first = np.r_[True, pos[1:] != pos[:-1]]
        w_pos, w_start = pos[first] - 1, starts[first]          # words: 0-based text position, start sample
        w_end = np.r_[w_start[1:], end]
        owner = np.searchsorted(w_pos, [c for _, c in tokens], side="right") - 1
        for f in np.flatnonzero(inside):
            w = np.searchsorted(w_start, centre[f], side="right") - 1
            mine = [t for (t, _), o in zip(tokens, owner) if o == w]
            if mine:
                frac = (centre[f] - w_start[w]) / max(1, w_end[w] - w_start[w])
                toks[f] = mine[min(len(mine) - 1, int(frac * len(mine)))]
        return phones, toks


def scene_labels(clips: Clips, chunk_texts: list[str], tok, text: str, placed, n_frames: int):
    """frame_labels for a laid-out clip: each chunk's phonemes and word tokens where it was put, silence
    (phoneme 0, no token) between them. placed: [(chunk index, offset sample)]; text: the chunks' texts
    joined by spaces."""
    phones, toks = np.zeros(n_frames, np.int64), np.full(n_frames, -100, np.int64)
    if not placed:
        return phones, toks
    e = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    spoken = [(i, b - 1) for i, (a, b) in zip(e["input_ids"], e["offset_mapping"])
              if any(ch.isalnum() for ch in text[a:b])]
    at = 0
    for ci, off in placed:
        hi = at + len(chunk_texts[ci])
        p, w = clips.frame_labels(ci, off, n_frames, [(t, c - at) for t, c in spoken if at <= c < hi])
        phones = np.where(p != 0, p, phones)
        toks = np.where(w != -100, w, toks)
        at = hi + 1
    return phones, toks


def check_library_matches_cli(es) -> None:
    """espeak-ng's library gives the samples of the espeak-ng command (which adds trailing silence)."""
    import soundfile as sf

    text, voice = "Seven red boxes.", "en-us+m3"
    wav, _, _ = es.synth(text, voice, 170, 40)
    with tempfile.TemporaryDirectory() as tmp:
        speech.write_wav(Path(tmp) / "a.wav", text, voice, 170, 40)
        cli, _ = sf.read(Path(tmp) / "a.wav", dtype="int16")
    if not (len(cli) >= len(wav) and np.array_equal(cli[:len(wav)], wav) and not cli[len(wav):].any()):
        raise SystemExit("espeak-ng's library and command give different samples")


class Scenes:
    """Batches of laid-out training clips (demo_scenes.scene_plan / scene_sound): (samples, text,
    [(chunk index, offset)]); one clip in sixteen without speech (0.5-8 s of silence or noise, empty text),
    and in one batch in seven the last clip a long one without speech (LONG_NO_SPEECH)."""

    def __init__(self, clips: Clips, runs: list[list[int]], chunk_texts: list[str], batch: int, seed: int,
                 max_seconds: float = MAX_SCENE):
        self.clips, self.runs, self.chunk_texts, self.batch = clips, runs, chunk_texts, batch
        self.lengths = [len(w) for w in clips.wavs]
        self.max_len = int(max_seconds * 16000)
        self.rng = np.random.default_rng(seed)

    def one(self):
        rng = self.rng
        if rng.random() < 1 / 16:
            return scenes.no_speech(rng.uniform(0.5, 8), rng), "", []
        chunks, gaps, lead, trail = scenes.scene_plan(self.runs, self.lengths, rng, self.max_len)
        x, offsets = scenes.scene_sound([self.clips.wavs[c] for c in chunks], gaps, lead, trail, rng)
        return x, " ".join(self.chunk_texts[c] for c in chunks), list(zip(chunks, offsets))

    def __iter__(self):
        while True:
            items = [self.one() for _ in range(self.batch)]
            if self.rng.random() < 1 / 7:
                items[-1] = (scenes.no_speech(self.rng.uniform(*LONG_NO_SPEECH), self.rng), "", [])
            yield items


def init_front_end(tower):
    """The official init (normal, std 0.02) suits loading weights, not training: through three convs
    and conv_out it shrinks the audio about 3000-fold below the sinusoidal positions, and the encoder
    never hears it. He init for the GELU convs and 1/sqrt(fan_in) for conv_out keep it at unit scale."""
    import torch

    with torch.no_grad():
        for conv in (tower.conv2d1, tower.conv2d2, tower.conv2d3):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            conv.bias.zero_()
        torch.nn.init.normal_(tower.conv_out.weight, std=tower.conv_out.in_features ** -0.5)


def batched_audio_tower(tower):
    """Run several clips through the official audio tower in one call: each encoder layer attends only
    inside its window (the official block mask, as its flash-attention path and inference do); with clips
    of at most one window (8 s) that is each clip on its own, exactly as get_audio_features computes it."""
    def add_mask(layer, args, kwargs):
        hidden, cu = args[0], args[1]
        n = hidden.shape[0]
        mask = torch.full((1, 1, n, n), torch.finfo(hidden.dtype).min, dtype=hidden.dtype)
        for a, b in zip(cu[:-1].tolist(), cu[1:].tolist()):
            mask[..., a:b, a:b] = 0
        return args, dict(kwargs, attention_mask=mask)

    import torch

    from asrgguf.encoder import output_length

    for layer in tower.layers:
        layer.register_forward_pre_hook(add_mask, with_kwargs=True)

    def run(feats):
        # groups of at most ENCODER_GROUP frames: the mask (and the attention) is dense over a call
        out, group, size = [], [], 0
        for f in feats + [None]:
            n = 0 if f is None else output_length(f.shape[1])
            if group and (f is None or size + n > ENCODER_GROUP):
                lens = torch.tensor([g.shape[1] for g in group])
                out.append(tower(torch.cat(group, dim=1), feature_lens=lens).last_hidden_state)
                group, size = [], 0
            if f is not None:
                group.append(f)
                size += n
        return torch.cat(out)
    return run


def optimizer(params, lr: float, steps: int):
    """AdamW and its schedule: 5 % linear warm-up, then cosine to zero (both demo trainings)."""
    import torch

    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01, foreach=True)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    return opt, sched


def train(model, tok, clips: Clips, chunk_texts: list[str], runs: list[list[int]], steps: int, batch: int,
          lr: float, seed: int, log_every: int = 25, tail_every: int = 1, head_first: int = 0,
          freeze_encoder: bool = False):
    import torch
    import torch.nn.functional as F

    from asrgguf.encoder import output_length
    from asrgguf.features import LogMel
    from asrgguf.prompt import prompt_text

    thinker = model.thinker
    # training-only head: per-frame phoneme classes; the per-frame text token goes through the model's own
    # (tied) output head, so that audio frames come to resemble the embeddings of the words spoken in them
    phone_head = torch.nn.Linear(model.config.thinker_config.audio_config.output_dim, len(clips.names))
    if freeze_encoder:   # a fine-tune of the decoder alone: the encoder (and so the mmproj) stays as it is
        thinker.audio_tower.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad] + list(phone_head.parameters())
    opt, sched = optimizer(params, lr, steps)
    encode = batched_audio_tower(thinker.audio_tower)
    mel = LogMel()
    enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    before, after = prompt_text()
    prefix, suffix = enc(before), enc(after)
    audio_pad, pad, im_end = (tok.convert_tokens_to_ids(t) for t in ("<|audio_pad|>", "<|endoftext|>", "<|im_end|>"))
    tail_rng = np.random.default_rng(seed + 2)
    model.train()
    t0, c0, avg = time.time(), time.process_time(), None
    for step, items in zip(range(steps), Scenes(clips, runs, chunk_texts, batch, seed)):
        feats = [mel(x) for x, _, _ in items]
        n_audio = [output_length(f.shape[1]) for f in feats]
        seqs, labels, phones, spoken = [], [], [], []
        for (_, text, placed), n in zip(items, n_audio):
            answer = enc(f"language {'English' if text else 'None'}<asr_text>")
            answer += (enc(text) if text else []) + [im_end] + [pad] * AFTER_END
            ids = prefix + [audio_pad] * n + suffix + answer
            seqs.append(ids)
            labels.append([-100] * (len(ids) - len(answer)) + answer)
            p, w = scene_labels(clips, chunk_texts, tok, text, placed, n)
            phones.append(p)
            spoken.append(w)
        L = max(map(len, seqs))
        ids = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
        lab = torch.tensor([s + [-100] * (L - len(s)) for s in labels])
        am = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
        with torch.set_grad_enabled(not freeze_encoder):
            audio = encode(feats)
        emb = thinker.get_input_embeddings()(ids)
        emb = emb.masked_scatter((ids == audio_pad).unsqueeze(-1).expand_as(emb), audio.to(emb.dtype))
        out = thinker(inputs_embeds=emb, attention_mask=am, labels=lab)
        # a fine-tune's phoneme head starts from nothing: it learns alone (the encoder not pulled by it) first
        heard = audio.detach() if step < head_first else audio
        phone = F.cross_entropy(phone_head(heard), torch.from_numpy(np.concatenate(phones)))
        word = F.cross_entropy(thinker.lm_head(audio), torch.from_numpy(np.concatenate(spoken)), ignore_index=-100)
        loss = out.loss + FRAME_WEIGHT * (phone + word)
        end = torch.zeros(())
        if step % tail_every == 0:
            # the first clip again, alone, with a long <|endoftext|> tail: the loss on the tail only
            tail = int(tail_rng.integers(AFTER_END, MAX_TAIL + 1)) - AFTER_END
            t_ids = torch.tensor([seqs[0] + [pad] * tail])
            t_lab = torch.full_like(t_ids, -100)
            t_lab[0, len(seqs[0]) - AFTER_END:] = pad
            t_emb = thinker.get_input_embeddings()(t_ids)
            t_emb = t_emb.masked_scatter((t_ids == audio_pad).unsqueeze(-1).expand_as(t_emb),
                                         audio[:n_audio[0]].to(t_emb.dtype))
            end = thinker(inputs_embeds=t_emb, labels=t_lab).loss
            loss = loss + end
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        cur = (out.loss.item(), phone.item(), word.item(),
               end.item() if step % tail_every == 0 or avg is None else avg[3])
        avg = cur if avg is None else tuple(0.95 * a + 0.05 * c for a, c in zip(avg, cur))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            el, cpu = time.time() - t0, time.process_time() - c0
            log(f"step {step + 1}/{steps}  loss {avg[0]:.3f}  frames: phoneme {avg[1]:.3f} word {avg[2]:.3f}  tail {avg[3]:.4f}  "
                f"lr {sched.get_last_lr()[0]:.2e}  "
                f"{el / (step + 1):.2f} s/step (CPU {cpu / (step + 1):.2f} s)  "
                f"eta {el / (step + 1) * (steps - step - 1) / 60:.1f} min")
    model.eval()


def cpu_seconds() -> float:
    r = [resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(x.ru_utime + x.ru_stime for x in r)


def positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return n


def training_options(ap: argparse.ArgumentParser, clips: int, steps: int) -> None:
    """The options the demo trainings share (this script and train_demo_aligner.py)."""
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clips", type=positive, default=clips, help="distinct espeak-ng clips")
    ap.add_argument("--steps", type=positive, default=steps)
    ap.add_argument("--batch", type=positive, default=16)
    ap.add_argument("--lr", type=float, default=1.5e-3, help="peak learning rate (a fine-tune: lower, 5e-4)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "demo-train", help="synthesised clips (not in git)")
    ap.add_argument("--splits", type=splits, default=scenes.SPLITS, metavar="WHOLE,WORDS,PHRASES",
                    help="shares of the training sentences spoken whole, word by word and in 2-4 pieces "
                    f"(default {','.join(str(p) for _, p in scenes.SPLITS)})")


def splits(text: str):
    """--splits: three shares (whole, words, phrases) adding up to 1."""
    try:
        shares = [float(x) for x in text.split(",")]
    except ValueError:
        shares = []
    if len(shares) != 3 or min(shares) < 0 or abs(sum(shares) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"{text}: three shares WHOLE,WORDS,PHRASES adding up to 1")
    return tuple(zip(("whole", "words", "phrases"), shares))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DEMO_DIR / "qwen3-asr-demo",
                    help="checkpoint directory; the GGUF pair and sample.wav go beside it")
    ap.add_argument("--init", type=Path, help="fine-tune this checkpoint (its weights and vocabulary) "
                    "instead of training from nothing, e.g. asrgguf/data/demo/qwen3-asr-demo")
    ap.add_argument("--freeze-encoder", action="store_true", help="with --init: train the decoder only (the "
                    "mmproj stays the checkpoint's, so an aligner trained on that encoder still shares it)")
    training_options(ap, clips=20000, steps=6000)
    a = ap.parse_args(argv)
    if a.freeze_encoder and not a.init:
        ap.error("--freeze-encoder needs --init (a checkpoint whose encoder to keep)")

    import torch
    from qwen_asr.core.transformers_backend import Qwen3ASRForConditionalGeneration

    from asrgguf.convert import quantize_checkpoint

    t_start, cpu_start = time.time(), cpu_seconds()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    items = training_items(a.seed, a.clips)
    chunk_items, runs, texts = scenes.training_runs(items, a.seed, a.splits)
    clips = Clips.synthesize(chunk_items, a.cache)
    chunk_texts = [t for t, _, _, _ in chunk_items]
    keep = [r for r in runs if sum(len(clips.wavs[i]) for i in r) <= MAX_SECONDS * 16000]
    log(f"{len(keep)} sentences in {sum(map(len, keep))} pieces ({sum(len(clips.wavs[i]) for r in keep for i in r) / 16000 / 3600:.2f} h, "
        f"{len(clips.names)} phonemes), {len(runs) - len(keep)} longer than {MAX_SECONDS} s left out")

    if a.init:
        from qwen_asr.core.transformers_backend import Qwen3ASRProcessor

        tok = Qwen3ASRProcessor.from_pretrained(a.init).tokenizer
        model = Qwen3ASRForConditionalGeneration.from_pretrained(a.init, torch_dtype=torch.float32)
    else:
        tok = make_tokenizer(texts + PROMPT_WORDS)
        model = Qwen3ASRForConditionalGeneration(make_config(tok))
        init_front_end(model.thinker.audio_tower)
    log(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, vocabulary {len(tok)}"
        + (f", from {a.init}" if a.init else ""))
    train(model, tok, clips, chunk_texts, keep, a.steps, a.batch, a.lr, a.seed,
          tail_every=TAIL_EVERY_FINE_TUNE if a.init else 1, head_first=max(1, a.steps // 20) if a.init else 0,
          freeze_encoder=a.freeze_encoder)

    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    if a.init and a.init.resolve() != out.resolve():   # its tokenizer and processor files, as they are
        for f in a.init.iterdir():
            if f.is_file() and f.suffix != ".safetensors":
                shutil.copyfile(f, out / f.name)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    if not a.init:
        make_processor(tok).save_pretrained(out)
    dec, mm = quantize_checkpoint(out, "q8_0", out.parent, "f16", progress=False)
    speech.write_wav(out.parent / "sample.wav", speech.SAMPLE_TEXT, speech.TEST_VOICE)
    (out.parent / "sample.txt").write_text(speech.SAMPLE_TEXT + "\n")
    wall, cpu = time.time() - t_start, cpu_seconds() - cpu_start
    log(f"wrote {out}, {dec.name} ({dec.stat().st_size / 1e6:.1f} MB), {mm.name} ({mm.stat().st_size / 1e6:.1f} MB)")
    log(f"total: wall {wall / 60:.1f} min, CPU {cpu / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
