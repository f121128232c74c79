"""Statistics over voiced and unvoiced frames apart (eGeMAPS computes its spectral parameters
so) beside the distribution-length input, kernel ridge by actor with speaker normalisation, on
rows rebuilt as ser builds them (tools/peer/krr_grid.py's recipe), screened before building
them into ser (docs/RESULTS.md, "The distribution input"):

    python tools/peer/voiced_regions.py F [BLOCK] [SEED]

F: the 65-column prosody file. BLOCK, the columns whose mean and deviation are taken over each
clip's voiced frames (pyin's flag) and, apart, over its unvoiced ones: `mfcc` (default, the 40
MFCCs), `mfcc13` (the first 13), `all` (every column but f0 and the flag). The new block is a
fourth part of the kernel, standardised within each actor like the others, each of its columns
weighted by a scale (0: the block left out, ser's input) relative to a statistics column's; the
scale is also chosen inside each fold on its training actors (4 inner folds by actor). SEED:
the projection's (7). Needs numpy, scikit-learn.
"""
import json, sys
import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import euclidean_distances
from arrays import load_safetensors
from copypaste import embedding

SCALES = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5]


def region_stats(fr, mask):
    """each column's mean and deviation over the frames where mask holds (zeros without any)."""
    x = fr[mask]
    return np.concatenate([x.mean(0), x.std(0)]) if len(x) else np.zeros(2 * fr.shape[1])


def main():
    t, meta = load_safetensors(sys.argv[1])
    block = sys.argv[2] if len(sys.argv) > 2 else "mfcc"
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    names, clips, config = json.loads(meta["feature_names"]), json.loads(meta["clips"]), json.loads(meta["config"])
    frames, lengths = t["frames"].astype(np.float64), t["lengths"].astype(int)
    actor = np.array([c["actor"] for c in clips]); emotion = np.array([c["emotion"] for c in clips])
    keep = np.flatnonzero(emotion != "disgust"); classes = sorted(set(emotion[keep])); K = len(classes)
    y = np.array([classes.index(e) for e in emotion[keep]]); a = actor[keep]
    dim = frames.shape[2]
    voiced = names.index("voiced")
    def columns(block):
        cols = block.removesuffix("-voiced")
        return ([i for i, n in enumerate(names) if n not in ("f0", "voiced")] if cols == "all"
                else [names.index(f"mfcc_{i}") for i in range(int(cols.removeprefix("mfcc") or 40))])
    stats = np.hstack([t["vectors"], t["stds"]])[keep].astype(np.float64)
    length = (lengths[keep] - 1) * config["hop"] / config["sample_rate"]
    blocks = block.split(",")
    regions = {}
    for bl in blocks:
        cols, rows = columns(bl), []
        for i in keep:
            fr = frames[i, : lengths[i]]
            v = fr[:, voiced] > 0.5
            rows.append(np.concatenate([region_stats(fr[:, cols], v)] + ([] if bl.endswith("-voiced") else [region_stats(fr[:, cols], ~v)])))
        regions[bl] = np.array(rows)
        print(f"{bl}: {regions[bl].shape[1]} columns", flush=True)

    def per_actor(x):
        x = x.copy()
        for s in np.unique(a):
            m = a == s; sd = x[m].std(0); x[m] = (x[m] - x[m].mean(0)) / np.where(sd > 0, sd, 1)
        return x
    rng = np.random.default_rng(seed)
    w = rng.normal(0, np.sqrt(2.0 / dim), (dim, 1024)); b = rng.uniform(0, 2 * np.pi, 1024)
    parts = [per_actor(stats), per_actor(np.array([embedding(frames[i, : lengths[i]], w, b) for i in keep])), per_actor(length[:, None])]
    extra = {bl: per_actor(x) for bl, x in regions.items()}
    grid = [(bl, sc) for bl in blocks for sc in SCALES]
    ns, ne = parts[0].shape[1], 1024; half = (ns + ne) / 2; width = ns + ne + 1

    def accs(tr, te):
        """accuracy on te for every (block, scale), fitted on tr (each part scaled on tr)."""
        sq = lambda x: (lambda x: (euclidean_distances(x[tr], x[tr], squared=True), euclidean_distances(x[te], x[tr], squared=True)))((x - x[tr].mean(0)) / np.where(x[tr].std(0) > 0, x[tr].std(0), 1))
        d = [sq(x) for x in parts]
        de = {bl: sq(x) for bl, x in extra.items()}
        cnt = np.bincount(y[tr], minlength=K); wc = tr.sum() / (K * np.maximum(cnt, 1))
        T = np.where(y[tr][:, None] == np.arange(K)[None], 1.0, -1.0)
        out = {}
        for bl, s in grid:
            # ser's weights (the halves equal, the length 4 times a statistics column), and the
            # new block's columns s times a statistics column each; the width grows with them
            c = [half / ns, half / ne, half / ns * 16, half / ns * s * s]
            wd = width + s * s * extra[bl].shape[1]
            kk, kt = (np.exp(-1.0 / wd * sum(ci * di[j] for ci, di in zip(c, d + [de[bl]]))) for j in (0, 1))
            m = KernelRidge(alpha=0.1, kernel="precomputed").fit(kk, T, sample_weight=wc[y[tr]])
            out[(bl, s)] = float((m.predict(kt).argmax(1) == y[te]).mean())
        return out
    outer = {key: [] for key in grid}
    nested, chosen = [], []
    for k in range(5):
        tr, te = (a - 1) % 5 != k, (a - 1) % 5 == k
        for key, v in accs(tr, te).items(): outer[key].append(v)
        inner = {key: [] for key in grid}
        tra = np.unique(a[tr])
        for j in range(4):
            held = tra[j::4]
            for key, v in accs(tr & ~np.isin(a, held), tr & np.isin(a, held)).items(): inner[key].append(v)
        best = max(grid, key=lambda key: (np.mean(inner[key]), key[1] == 0.0))
        chosen.append(best); nested.append(outer[best][-1])
        print("fold", k, "chosen", best, "outer", round(outer[best][-1], 4), "without", round(outer[grid[0]][-1], 4), flush=True)
    for key, v in outer.items(): print(f"{key[0]} scale {key[1]}:", round(np.mean(v), 4), [round(x, 3) for x in v])
    print("chosen inside each fold", round(np.mean(nested), 4), chosen)


if __name__ == "__main__":
    main()
