"""Random bfloat16 weights for a skeleton checkpoint (random_checkpoint.py --skeleton), drawn where qwen-asr is not
installed: the shapes come from asrgguf.checkpoint. Cost does not depend on the values (benchmarks only).
    python tools/cuda/fill_random.py SKELETON OUT"""
import json
import math
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from asrgguf.checkpoint import Checkpoint

skel, out = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(skel, out, dirs_exist_ok=True)
full = json.loads((skel / "config.json").read_text())
cfg = full["thinker_config"]
ck = Checkpoint.__new__(Checkpoint)
tied = cfg["text_config"].get("tie_word_embeddings", full.get("tie_word_embeddings", True))
ck.text_config, ck.audio_config, ck.tied = cfg["text_config"], cfg["audio_config"], tied
g = torch.Generator().manual_seed(0)
sd = {}
for (kind, name), shape in ck.expected_shapes().items():
    t = torch.randn(shape, generator=g)
    if name == "embed_tokens.weight":
        t *= 0.02
    elif len(shape) >= 2:
        t /= math.sqrt(t[0].numel())
    elif "norm" in name or "ln_post" in name:
        t = 1 + 0.1 * t if name.endswith("weight") else 0.1 * t
    else:
        t *= 0.1
    prefix = "thinker." if name == "lm_head.weight" else "thinker.model." if kind == "text" else "thinker.audio_tower."
    sd[prefix + name] = t.to(torch.bfloat16)
save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
print(out, len(sd), "tensors")
