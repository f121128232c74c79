"""Kernel ridge's settings on the distribution-length input by actor with speaker normalisation,
on rows rebuilt as ser builds them (tools/peer/copypaste.py's recipe, numpy's own projection),
over a grid, and chosen inside each fold on its training actors (4 inner folds by actor), a
figure free of choosing on the test actors (docs/RESULTS.md, "The distribution input"):

    python tools/peer/krr_grid.py F [penalty|weights] [SEED]

F: the 65-column prosody file. `penalty` (default): gamma x lambda, 3 x 3 (6 minutes on 2
cores). `weights`: the embedding's share of the kernel (its variance against the statistics',
1 in ser) x the clip length's scale (4 in ser), 5 x 3. SEED: the projection's (7).

Needs numpy, scikit-learn.
"""
import json, sys
import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import euclidean_distances
from arrays import load_safetensors
from copypaste import embedding

# (gamma, lambda, embedding weight, length scale); the first is ser's own.
GRIDS = {
    "penalty": [(g, l, 1.0, 4.0) for g in [1.0, 0.5, 2.0] for l in [0.1, 0.03, 0.3]],
    "weights": [(1.0, 0.1, e, s) for e in [1.0, 0.2, 0.3, 0.5, 0.7] for s in [4.0, 6.0, 8.0]],
}


def main():
    t, meta = load_safetensors(sys.argv[1])
    grid = GRIDS[sys.argv[2] if len(sys.argv) > 2 else "penalty"]
    seed = int(sys.argv[3]) if len(sys.argv) > 3 else 7
    clips, config = json.loads(meta["clips"]), json.loads(meta["config"])
    frames, lengths = t["frames"].astype(np.float64), t["lengths"].astype(int)
    actor = np.array([c["actor"] for c in clips]); emotion = np.array([c["emotion"] for c in clips])
    keep = np.flatnonzero(emotion != "disgust"); classes = sorted(set(emotion[keep])); K = len(classes)
    y = np.array([classes.index(e) for e in emotion[keep]]); a = actor[keep]
    dim = frames.shape[2]
    stats = np.hstack([t["vectors"], t["stds"]])[keep].astype(np.float64)
    length = (lengths[keep] - 1) * config["hop"] / config["sample_rate"]
    def per_actor(x):
        x = x.copy()
        for s in np.unique(a):
            m = a == s; sd = x[m].std(0); x[m] = (x[m] - x[m].mean(0)) / np.where(sd > 0, sd, 1)
        return x
    rng = np.random.default_rng(seed)
    w = rng.normal(0, np.sqrt(2.0 / dim), (dim, 1024)); b = rng.uniform(0, 2 * np.pi, 1024)
    parts = [per_actor(stats), per_actor(np.array([embedding(frames[i, : lengths[i]], w, b) for i in keep])), per_actor(length[:, None])]
    ns, ne = parts[0].shape[1], 1024; half = (ns + ne) / 2; width = ns + ne + 1
    def accs(tr, te):
        """accuracy on te for every setting of the grid, fitted on tr (each part scaled on tr)."""
        d = []
        for x in parts:
            mu, sd = x[tr].mean(0), x[tr].std(0); x = (x - mu) / np.where(sd > 0, sd, 1)
            d.append((euclidean_distances(x[tr], x[tr], squared=True), euclidean_distances(x[te], x[tr], squared=True)))
        cnt = np.bincount(y[tr], minlength=K); wc = tr.sum() / (K * np.maximum(cnt, 1))
        T = np.where(y[tr][:, None] == np.arange(K)[None], 1.0, -1.0)
        out = {}
        for g, lam, ew, ls in grid:
            # each part's squared distance weighted: the halves equal at ew 1, the length ls
            # times a statistics column's deviation
            c = [half / ns, half / ne * ew, half / ns * ls * ls]
            kk, kt = (np.exp(-g / width * sum(ci * di[j] for ci, di in zip(c, d))) for j in (0, 1))
            m = KernelRidge(alpha=lam, kernel="precomputed").fit(kk, T, sample_weight=wc[y[tr]])
            out[(g, lam, ew, ls)] = float((m.predict(kt).argmax(1) == y[te]).mean())
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
        best = max(grid, key=lambda key: (np.mean(inner[key]), key == grid[0]))
        chosen.append(best); nested.append(outer[best][-1])
        print("fold", k, "chosen", best, "outer", round(outer[best][-1], 4), "ser's", round(outer[grid[0]][-1], 4), flush=True)
    for key, v in outer.items(): print("gamma %g lambda %g embedding %g length %g:" % key, round(np.mean(v), 4), [round(x, 3) for x in v])
    print("chosen inside each fold", round(np.mean(nested), 4), chosen)


if __name__ == "__main__":
    main()
