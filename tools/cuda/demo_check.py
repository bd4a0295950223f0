"""One configuration of the demo model on the GPU machine, against DIR/ref.json (tools/cuda/demo_ref.py).
    python tools/cuda/demo_check.py DIR DECODER DEVICE DTYPE N_GPU_LAYERS(auto|N) REF_KEY [words]
ASRGGUF_NO_NATIVE=1 in the environment: llama.cpp's own q8_0 products. With "words", the packaged demo aligner
(same device and GPU layers) gives word times, compared with the CPU's (ref.json's cpu_words)."""
import json
import sys
import time
from pathlib import Path

from asrgguf import Transcriber
from asrgguf.align import Aligner

d, dec, dev, dt, ngl, key = sys.argv[1:7]
want_words = sys.argv[7:8] == ["words"]
refs = json.loads((Path(d) / "ref.json").read_text())
ref = refs[key]
t0 = time.perf_counter()
kw = dict(device=dev, dtype=dt, n_gpu_layers=None if ngl == "auto" else int(ngl))
t = Transcriber.from_gguf(dec, max_new_tokens=64, aligner=Aligner.load("demo", **kw) if want_words else None, **kw)
if want_words:
    print(f"  aligner: {t.aligner.engine.model_info}")
print(f"  loaded in {time.perf_counter() - t0:.2f} s: {t.model_info}")
for i, name in enumerate(refs["clips"]):
    r = t.transcribe_all(str(Path(d) / name), timestamps="word" if want_words else "segment")
    n = next((j for j, (a, b) in enumerate(zip(ref[i], r.token_ids)) if a != b), min(len(ref[i]), len(r.token_ids)))
    print(f"  {name}: ids == {key}: {r.token_ids == ref[i]} (first difference at {n} of {len(ref[i])}) "
          f"{r.text!r} {({k: round(v, 4) for k, v in r.timings.items() if isinstance(v, float)})}")
    if want_words:
        got = [[w.text, round(w.start, 3), round(w.end, 3)] for s in r.segments for w in (s.words or [])]
        cpu = refs["cpu_words"][i]
        same_units = [w[0] for w in got] == [w[0] for w in cpu]
        dmax = max((abs(a[k] - b[k]) for a, b in zip(got, cpu) for k in (1, 2)), default=0.0) if same_units else None
        print(f"    words == cpu_words: {got == cpu}; same words: {same_units}; largest time difference (s): {dmax}; "
              f"{got[:4]}")
