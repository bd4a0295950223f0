"""One configuration of the demo model on the GPU machine, against DIR/ref.json (tools/cuda/demo_ref.py).
    python tools/cuda/demo_check.py DIR DECODER DEVICE DTYPE N_GPU_LAYERS(auto|N) REF_KEY"""
import json
import sys
import time
from pathlib import Path

from asrgguf import Transcriber

d, dec, dev, dt, ngl, key = sys.argv[1:7]
refs = json.loads((Path(d) / "ref.json").read_text())
ref = refs[key]
t0 = time.perf_counter()
t = Transcriber.from_gguf(dec, device=dev, dtype=dt, n_gpu_layers=None if ngl == "auto" else int(ngl),
                          max_new_tokens=64)
print(f"  loaded in {time.perf_counter() - t0:.2f} s: {t.model_info}")
for i, name in enumerate(refs["clips"]):
    r = t.transcribe(str(Path(d) / name))
    n = next((j for j, (a, b) in enumerate(zip(ref[i], r.token_ids)) if a != b), min(len(ref[i]), len(r.token_ids)))
    print(f"  {name}: ids == {key}: {r.token_ids == ref[i]} (first difference at {n} of {len(ref[i])}) "
          f"{r.text!r} {({k: round(v, 4) for k, v in r.timings.items() if isinstance(v, float)})}")
