#!/usr/bin/env python3
"""Train the built-in demo aligner: a small Qwen3-ForcedAligner on espeak-ng speech (issues 14, 25).

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
inside two words it speaks as one, has no label). Clips are laid out as the ASR training lays them out
(tests/support/demo_scenes.py, issue 25): sentences spoken whole, word by word or in pieces with
0.1-2.5 s of silence between them, up to three sentences of different voices in a row (up to 20 s,
so that later classes are learnt too), silence around, gain and white, pink, brown or music-like noise.
Export: the checkpoint (bfloat16 safetensors, the ASR model's tokenizer and processor files) and the
q8_0 decoder GGUF that `asrgguf quantize` makes of it; its mmproj is checked equal to the ASR's.

    nice -n 19 python tools/train_demo_aligner.py        # the packaged aligner (docs/align.md)
    python tools/train_demo_aligner.py --steps 30 --clips 300 --out /tmp/al-smoke/qwen3-aligner-demo
    python tools/train_demo_aligner.py --init-gguf asrgguf/data/demo/qwen3-aligner-demo-q8_0.gguf --lr 5e-4 ...
        # fine-tune: the decoder and head start from an aligner GGUF's (dequantized), the encoder is --asr's
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

import support.demo_scenes as scenes  # noqa: E402
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
        self.lengths = [len(w) for w in wavs]

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


def example(clips: WordClips, runs: list[list[int]], rng: np.random.Generator):
    """A laid-out clip (demo_scenes.scene_plan, scene_sound): (samples, text, [(start, end)] in samples,
    -1 where unknown)."""
    chunks, gaps, lead, trail = scenes.scene_plan(runs, clips.lengths, rng, int(MAX_SECONDS * 16000), p_more=0.4)
    x, offsets = scenes.scene_sound([clips.wavs[c] for c in chunks], gaps, lead, trail, rng)
    spans = [tuple(-1 if v < 0 else v + off for v in s) for c, off in zip(chunks, offsets) for s in clips.spans[c]]
    return x, " ".join(clips.texts[c] for c in chunks), spans


def batches(clips: WordClips, runs: list[list[int]], batch: int, seed: int):
    rng = np.random.default_rng(seed)
    while True:
        yield [example(clips, runs, rng) for _ in range(batch)]


def train(model, tok, clips: WordClips, runs: list[list[int]], steps: int, batch: int, lr: float, seed: int,
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
    for step, items in zip(range(steps), batches(clips, runs, batch, seed)):
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
    ap.add_argument("--init-gguf", type=Path, help="fine-tune: the decoder and head start from this aligner GGUF's "
                    "(dequantized to float32; e.g. asrgguf/data/demo/qwen3-aligner-demo-q8_0.gguf)")
    training_options(ap, clips=8000, steps=3000)
    a = ap.parse_args(argv)

    import torch
    from qwen_asr.core.transformers_backend import Qwen3ASRForConditionalGeneration, Qwen3ASRProcessor

    from asrgguf.convert import quantize_checkpoint

    t_start, cpu_start = time.time(), cpu_seconds()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    items = training_items(a.seed + 100, a.clips)   # other sentences than the ASR model's, same voices
    chunk_items, runs, _ = scenes.training_runs(items, a.seed + 100, a.splits)
    clips = WordClips.synthesize(chunk_items, a.cache)
    keep = [r for r in runs if sum(clips.lengths[i] for i in r) <= 7.5 * 16000]
    log(f"{len(keep)} sentences in {sum(map(len, keep))} pieces ({sum(clips.lengths[i] for r in keep for i in r) / 16000 / 3600:.2f} h)")

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
        if a.init_gguf:
            from asrgguf import gguf_names as names
            from asrgguf.gguf_file import read_tensor

            for key, value in model.thinker.model.state_dict().items():
                t = read_tensor(a.init_gguf, names.text_to_gguf(key))
                if t is None or t.shape != tuple(value.shape):
                    raise SystemExit(f"{a.init_gguf}: no tensor for {key} {tuple(value.shape)}")
                value.copy_(torch.from_numpy(np.ascontiguousarray(t)))
            model.thinker.lm_head.weight.copy_(torch.from_numpy(np.ascontiguousarray(read_tensor(a.init_gguf, names.ALIGNER_HEAD))))
        else:
            model.thinker.lm_head.weight.normal_(0, 0.02)
    del asr
    log(f"model: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters, {CLASSIFY_NUM} classes "
        f"of {SEGMENT_MS} ms, from {a.asr}" + (f" and {a.init_gguf}" if a.init_gguf else ""))
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
