#!/usr/bin/env python3
"""Train the built-in demo aligner: a small Qwen3-ForcedAligner on espeak-ng speech (issue 14).

The labels are espeak-ng's own word boundaries (libespeak-ng's word events, tests/support/demo_speech.py
Espeak.synth_words): each word's start and end in classes of 80 ms, as the published aligner counts.
The model is the official class (Qwen3ASRForConditionalGeneration with a thinker of model_type
"qwen3_forced_aligner": the head is Linear(hidden, classify_num)) at the demo ASR model's size, and
it starts from the demo ASR model (tools/train_demo.py): its audio encoder, kept frozen, so that the
aligner's mmproj is the ASR model's byte for byte and the two share one file; and its decoder, which
learns to point each word's two <timestamp> tokens at the audio frames where espeak-ng said it.
The input is the official one (qwen_asr/inference/qwen3_forced_aligner.py): <|audio_start|>, the
audio, <|audio_end|>, then each word (the official English split) followed by <timestamp><timestamp>;
cross-entropy on the classes at the <timestamp> positions (a boundary espeak-ng does not report,
inside two words it speaks as one, has no label). Clips are single sentences and, one in three, two
or three sentences in a row (up to 20 s) so that later classes are learnt too; noise, gain and
silence as the ASR training adds them.
Export: the checkpoint (bfloat16 safetensors, the ASR model's tokenizer and processor files) and the
q8_0 decoder GGUF that `asrgguf quantize` makes of it; its mmproj is checked equal to the ASR's.

    nice -n 19 python tools/train_demo_aligner.py        # the packaged aligner (docs/align.md)
    python tools/train_demo_aligner.py --steps 30 --clips 300 --out /tmp/al-smoke/qwen3-aligner-demo
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

import support.demo_speech as speech  # noqa: E402
from support.random_checkpoint import CLASSIFY_NUM, SEGMENT_MS, aligner_config, mark_aligner  # noqa: E402
from train_demo import (DEMO_DIR, batched_audio_tower, check_library_matches_cli, cpu_seconds, log,  # noqa: E402
                        optimizer, training_items, training_options)

MAX_SECONDS = 20.0          # a training example: up to three sentences in a row
ALIGNER_DIR = ROOT / ".cache" / "demo-aligner" / "qwen3-aligner-demo"   # the checkpoint (not in git)


class WordClips:
    """16 kHz int16 clips, their texts and each word's espeak-ng (start, end) sample (-1: not reported)."""

    def __init__(self, wavs, spans, texts):
        self.wavs, self.spans, self.texts = wavs, spans, texts

    @classmethod
    def synthesize(cls, items, cache: Path) -> "WordClips":
        from asrgguf.audio import prepare

        texts = [t for t, _, _, _ in items]
        path = cache / f"words-{hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]}.npz"
        if path.exists():
            with np.load(path) as z:
                split = lambda k: np.split(z[k], z[k + "_ends"][:-1])  # noqa: E731
                return cls(split("wav"), [s.reshape(-1, 2) for s in split("span")], texts)
        es = speech.Espeak()
        check_library_matches_cli(es)
        wavs, spans, scale = [], [], 16000 / es.sample_rate
        for text, voice, speed, pitch in items:
            wav, words, _ = es.synth_words(text, voice, speed, pitch)
            wavs.append(np.round(prepare(wav / 32768, es.sample_rate) * 32767).astype(np.int16))
            spans.append(np.array([[-1 if x is None else round(x * scale) for x in w] for w in words], np.int32))
        arrays = {}
        for k, v in (("wav", wavs), ("span", [s.reshape(-1) for s in spans])):
            arrays[k], arrays[k + "_ends"] = np.concatenate(v), np.cumsum([len(x) for x in v])
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(path, **arrays)
        return cls(wavs, spans, texts)


def example(clips: WordClips, idx: list[int], rng: np.random.Generator):
    """Clips idx in a row (0.1-0.6 s apart) with gain, silence and noise: (samples, text, [(start, end)]
    in samples, -1 where unknown)."""
    gain = 10 ** (rng.uniform(-20, 0) / 20)
    parts, spans, texts = [], [], []
    at = int(rng.integers(0, 4800))
    parts.append(np.zeros(at, np.float32))
    for n, i in enumerate(idx):
        if n:
            gap = int(rng.integers(1600, 9600))
            parts.append(np.zeros(gap, np.float32))
            at += gap
        w = clips.wavs[i].astype(np.float32) / 32767 * gain
        parts.append(w)
        spans += [tuple(-1 if x < 0 else x + at for x in s) for s in clips.spans[i]]
        texts.append(clips.texts[i])
        at += len(w)
    parts.append(np.zeros(int(rng.integers(0, 4800)), np.float32))
    x = np.concatenate(parts)
    if rng.random() < 0.7:
        rms = float(np.sqrt(np.mean(x ** 2))) + 1e-8
        x = x + rng.normal(0, rms * 10 ** (-rng.uniform(15, 45) / 20), len(x)).astype(np.float32)
    return x, " ".join(texts), spans


def batches(clips: WordClips, keep: list[int], batch: int, seed: int):
    """Examples of one sentence or (one in three) two or three in a row, at most MAX_SECONDS."""
    rng = np.random.default_rng(seed)
    while True:
        items = []
        for _ in range(batch):
            k = 1 if rng.random() < 2 / 3 else int(rng.integers(2, 4))
            idx = [int(i) for i in rng.choice(keep, k, replace=False)]
            while len(idx) > 1 and sum(len(clips.wavs[i]) for i in idx) + 0.6 * 16000 * k > MAX_SECONDS * 16000:
                idx.pop()
            items.append(example(clips, idx, rng))
        yield items


def train(model, tok, clips: WordClips, keep: list[int], steps: int, batch: int, lr: float, seed: int,
          log_every: int = 25):
    import torch
    import torch.nn.functional as F

    from asrgguf.align import split_units
    from asrgguf.encoder import output_length
    from asrgguf.features import LogMel

    thinker = model.thinker
    for p in thinker.audio_tower.parameters():  # frozen: the aligner's mmproj is the ASR model's
        p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt, sched = optimizer(params, lr, steps)
    encode = batched_audio_tower(thinker.audio_tower)
    mel = LogMel()
    ids_of = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    start, end_, pad_id, ts_id = (tok.convert_tokens_to_ids(t) for t in
                                  ("<|audio_start|>", "<|audio_end|>", "<|audio_pad|>", "<timestamp>"))
    pad = tok.convert_tokens_to_ids("<|endoftext|>")
    per_class = SEGMENT_MS / 1000 * 16000
    thinker.train()
    t0, c0, avg = time.time(), time.process_time(), None
    for step, items in zip(range(steps), batches(clips, keep, batch, seed)):
        feats = [mel(x) for x, _, _ in items]
        n_audio = [output_length(f.shape[1]) for f in feats]
        seqs, targets = [], []
        for (_, text, spans), n in zip(items, n_audio):
            units = split_units(text, "English")
            assert len(units) == len(spans), (text, units)
            ids = [start] + [pad_id] * n + [end_] + ids_of("".join(u + "<timestamp><timestamp>" for u in units))
            labels = [min(CLASSIFY_NUM - 1, round(x / per_class)) if x >= 0 else -100 for s in spans for x in s]
            assert sum(i == ts_id for i in ids) == len(labels)
            seqs.append(ids)
            targets.append(labels)
        L = max(map(len, seqs))
        ids = torch.tensor([s + [pad] * (L - len(s)) for s in seqs])
        am = torch.tensor([[1] * len(s) + [0] * (L - len(s)) for s in seqs])
        with torch.no_grad():
            audio = encode(feats)
        emb = thinker.get_input_embeddings()(ids)
        emb = emb.masked_scatter((ids == pad_id).unsqueeze(-1).expand_as(emb), audio.to(emb.dtype))
        logits = thinker(inputs_embeds=emb, attention_mask=am).logits
        rows = ids == ts_id
        lab = torch.tensor([x for t in targets for x in t])
        loss = F.cross_entropy(logits[rows], lab, ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        with torch.no_grad():
            ok = lab >= 0
            err = (logits[rows].argmax(-1)[ok] - lab[ok]).abs().float() * SEGMENT_MS
        cur = (loss.item(), err.mean().item(), (err <= 100).float().mean().item())
        avg = cur if avg is None else tuple(0.95 * a + 0.05 * c for a, c in zip(avg, cur))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            el, cpu = time.time() - t0, time.process_time() - c0
            log(f"step {step + 1}/{steps}  loss {avg[0]:.3f}  error {avg[1]:.0f} ms  within 100 ms {100 * avg[2]:.1f} %  "
                f"lr {sched.get_last_lr()[0]:.2e}  {el / (step + 1):.2f} s/step (CPU {cpu / (step + 1):.2f} s)  "
                f"eta {el / (step + 1) * (steps - step - 1) / 60:.1f} min")
    model.eval()


def same_tensors(a: Path, b: Path) -> bool:
    """Whether two GGUF files hold the same tensors (names, types, bytes)."""
    from gguf import GGUFReader

    ta = {t.name: (int(t.tensor_type), bytes(t.data)) for t in GGUFReader(a).tensors}
    tb = {t.name: (int(t.tensor_type), bytes(t.data)) for t in GGUFReader(b).tensors}
    return ta == tb


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--asr", type=Path, default=DEMO_DIR / "qwen3-asr-demo", help="the demo ASR checkpoint")
    ap.add_argument("--out", type=Path, default=ALIGNER_DIR,
                    help="checkpoint directory; the q8_0 decoder GGUF goes to --gguf-dir")
    ap.add_argument("--gguf-dir", type=Path, default=DEMO_DIR, help="where the decoder GGUF goes")
    training_options(ap, clips=8000, steps=3000)
    a = ap.parse_args(argv)

    import torch
    from qwen_asr.core.transformers_backend import Qwen3ASRForConditionalGeneration, Qwen3ASRProcessor

    from asrgguf.convert import quantize_checkpoint

    t_start, cpu_start = time.time(), cpu_seconds()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    items = training_items(a.seed + 100, a.clips)   # other sentences than the ASR model's, same voices
    clips = WordClips.synthesize(items, a.cache)
    keep = [i for i, w in enumerate(clips.wavs) if len(w) <= 7.5 * 16000]
    log(f"{len(keep)} sentences ({sum(len(clips.wavs[i]) for i in keep) / 16000 / 3600:.2f} h)")

    proc = Qwen3ASRProcessor.from_pretrained(a.asr)
    tok = proc.tokenizer
    if tok.convert_tokens_to_ids("<timestamp>") in (None, tok.unk_token_id):
        raise SystemExit(f"{a.asr}: its vocabulary has no <timestamp> token (retrain it with tools/train_demo.py)")
    asr = Qwen3ASRForConditionalGeneration.from_pretrained(a.asr, torch_dtype=torch.float32)
    model = Qwen3ASRForConditionalGeneration(aligner_config(asr.config, tok))
    state = {k: v for k, v in asr.state_dict().items() if not k.endswith("lm_head.weight")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert [k for k in missing if not k.endswith("lm_head.weight")] == [] and not unexpected, (missing, unexpected)
    with torch.no_grad():
        model.thinker.lm_head.weight.normal_(0, 0.02)
    del asr
    log(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {CLASSIFY_NUM} classes "
        f"of {SEGMENT_MS} ms, from {a.asr}")
    train(model, tok, clips, keep, a.steps, a.batch, a.lr, a.seed)

    out = a.out
    out.mkdir(parents=True, exist_ok=True)
    model.to(torch.bfloat16).save_pretrained(out, safe_serialization=True)
    proc.save_pretrained(out)
    mark_aligner(out)
    a.gguf_dir.mkdir(parents=True, exist_ok=True)
    dec, mm = quantize_checkpoint(out, "q8_0", a.gguf_dir, "f16", progress=False)
    asr_mm = a.asr.parent / "mmproj-qwen3-asr-demo-f16.gguf"
    if asr_mm.is_file() and mm != asr_mm:
        if not same_tensors(mm, asr_mm):
            raise SystemExit(f"{mm} and {asr_mm} differ: the encoder was not kept frozen")
        mm.unlink()
        log(f"the aligner's mmproj is {asr_mm.name}'s tensors: removed the copy")
    wall, cpu = time.time() - t_start, cpu_seconds() - cpu_start
    log(f"wrote {out}, {dec} ({dec.stat().st_size / 1e6:.1f} MB)")
    log(f"total: wall {wall / 60:.1f} min, CPU {cpu / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
