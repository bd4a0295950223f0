"""Speaker count and DER of senko's clustering settings on bench/der.py's conversations (count not given).

The sub-segments and CAM++ embeddings of the files are computed once (asrgguf/speakers.py, cached with
--cache); then senko's spectral clustering runs for each setting: pval and min_pnum (the pruning of the
affinity matrix), mer_cos (the merge of clusters whose centroids are this close), min_cluster_size (smaller
clusters are folded into the nearest one). Prints the files whose count was right and the DER.

    python3 bench/count_sweep.py --files 12 [--cache /tmp/der-embeddings.pkl] [--accurate]

Figures: docs/speakers.md ("The speaker count: senko's settings tried").
"""
from __future__ import annotations

import argparse
import itertools
import pickle
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import der  # noqa: E402


def embeddings(d, files: int) -> list[dict]:
    cap: dict = {}
    orig = d.cluster

    def grab(emb, subs, o):
        cap["emb"], cap["subs"] = emb, list(subs)
        return orig(emb, subs, o)

    d.cluster = grab
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(files):
            wav, ref = der.conversation(i, 2 + i % 3, Path(tmp))
            d.turns(wav)
            out.append({"k": 2 + i % 3, "ref": ref, "emb": cap["emb"], "subs": cap["subs"], "dur": wav.size / der.SR})
    d.cluster = orig
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=12)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--accurate", action="store_true",
                    help="senko's accurate sub-segments (1.45 s every 0.48 s, instead of 1.5 s every 0.6 s)")
    a = ap.parse_args()
    from asrgguf.speakers import Diarizer, DiarizeOptions

    d = Diarizer()
    if a.accurate:
        gen = d._d._generate_subsegments
        d._d._generate_subsegments = lambda segs, accurate: gen(segs, True)
    if a.cache and Path(a.cache).exists():
        data = pickle.loads(Path(a.cache).read_bytes())
    else:
        data = embeddings(d, a.files)
        if a.cache:
            Path(a.cache).write_bytes(pickle.dumps(data))
    sc = d._d.spectral_cluster
    grid = [dict(pval=p, min_pnum=m, mer_cos=c, min_cluster_size=4)
            for p, m, c in itertools.product([0.012, 0.05, 0.1, 0.2], [3, 6], [0.875, 0.8, None])]
    grid += [dict(pval=0.012, min_pnum=6, mer_cos=c, min_cluster_size=s)
             for s, c in itertools.product([4, 3, 2], [0.875, 0.9, 0.92])]
    for g in grid:
        sc.cluster.pval, sc.cluster.min_pnum, sc.mer_cos, sc.min_cluster_size = \
            g["pval"], g["min_pnum"], g["mer_cos"], g["min_cluster_size"]
        ok, rate, found = der.score(data, [d.cluster(f["emb"].copy(), f["subs"], DiarizeOptions()) for f in data])
        print(f"{g}: count right {ok}/{len(data)}, DER {rate:.3f}, found {found}", flush=True)


if __name__ == "__main__":
    main()
