"""Random bfloat16 weights for a skeleton checkpoint (random_checkpoint.py --skeleton), drawn where qwen-asr is not
installed: the shapes come from asrgguf.checkpoint. Cost does not depend on the values (benchmarks only).
    python tools/cuda/fill_random.py SKELETON OUT"""
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from asrgguf.checkpoint import Checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from support.random_checkpoint import draw_weight  # noqa: E402  (the same scales as the random checkpoints)

skel, out = Path(sys.argv[1]), Path(sys.argv[2])
shutil.copytree(skel, out, dirs_exist_ok=True)
full = json.loads((skel / "config.json").read_text())
cfg = full["thinker_config"]
ck = Checkpoint.__new__(Checkpoint)
tied = cfg["text_config"].get("tie_word_embeddings", full.get("tie_word_embeddings", True))
ck.text_config, ck.audio_config, ck.tied, ck.aligner = cfg["text_config"], cfg["audio_config"], tied, False
g = torch.Generator().manual_seed(0)
sd = {}
for (kind, name), shape in ck.expected_shapes().items():
    prefix = "thinker." if name == "lm_head.weight" else "thinker.model." if kind == "text" else "thinker.audio_tower."
    sd[prefix + name] = draw_weight(name, shape, g, tied).to(torch.bfloat16)
save_file(sd, str(out / "model.safetensors"), metadata={"format": "pt"})
print(out, len(sd), "tensors")
