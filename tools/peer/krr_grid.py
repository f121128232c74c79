"""Kernel ridge's gamma and lambda on the distribution-length input by actor with speaker
normalisation, on rows rebuilt as ser builds them (tools/peer/copypaste.py's recipe, numpy's own
projection), over a 3 x 3 grid, and chosen inside each fold on its training actors (4 inner
folds by actor), a figure free of choosing on the test actors (docs/RESULTS.md, "The
distribution input"):

    python tools/peer/krr_grid.py F      # F: the 65-column prosody file; 6 minutes on 2 cores

Needs numpy, scikit-learn.
"""
import json, sys
import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import euclidean_distances
from arrays import load_safetensors
from copypaste import embedding

GAMMAS, LAMBDAS = [0.5, 1.0, 2.0], [0.03, 0.1, 0.3]


def main():
    t, meta = load_safetensors(sys.argv[1])
    names, clips, config = json.loads(meta["feature_names"]), json.loads(meta["clips"]), json.loads(meta["config"])
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
    rng = np.random.default_rng(7)
    w = rng.normal(0, np.sqrt(2.0 / dim), (dim, 1024)); b = rng.uniform(0, 2 * np.pi, 1024)
    E = per_actor(np.array([embedding(frames[i, : lengths[i]], w, b) for i in keep]))
    X = np.hstack([per_actor(stats), E, per_actor(length[:, None])])
    ns, ne = stats.shape[1], 1024; half = (ns + ne) / 2
    wt = np.concatenate([np.full(ns, np.sqrt(half / ns)), np.full(ne, np.sqrt(half / ne)), [np.sqrt(half / ns) * 4]])
    def accs(tr, te):
        """accuracy on te for every (gamma, lambda), fitted on tr (scaler on tr)."""
        mu, sd = X[tr].mean(0), X[tr].std(0); sd = np.where(sd > 0, sd, 1)
        x = (X - mu) / sd * wt
        d2 = euclidean_distances(x[tr], x[tr], squared=True); d2t = euclidean_distances(x[te], x[tr], squared=True)
        cnt = np.bincount(y[tr], minlength=K); wc = tr.sum() / (K * np.maximum(cnt, 1))
        T = np.where(y[tr][:, None] == np.arange(K)[None], 1.0, -1.0)
        out = {}
        for g in GAMMAS:
            kk, kt = np.exp(-g / x.shape[1] * d2), np.exp(-g / x.shape[1] * d2t)
            for lam in LAMBDAS:
                m = KernelRidge(alpha=lam, kernel="precomputed").fit(kk, T, sample_weight=wc[y[tr]])
                out[(g, lam)] = float((m.predict(kt).argmax(1) == y[te]).mean())
        return out
    grid = {k: [] for k in [(g, l) for g in GAMMAS for l in LAMBDAS]}
    nested, chosen = [], []
    for k in range(5):
        tr, te = (a - 1) % 5 != k, (a - 1) % 5 == k
        for key, v in accs(tr, te).items(): grid[key].append(v)
        # inner: the training actors in 4 folds
        inner = {key: [] for key in grid}
        tra = np.unique(a[tr])
        for j in range(4):
            held = tra[j::4]
            itr, ite = tr & ~np.isin(a, held), tr & np.isin(a, held)
            for key, v in accs(itr, ite).items(): inner[key].append(v)
        best = max(inner, key=lambda key: (np.mean(inner[key]), key == (1.0, 0.1)))
        chosen.append(best); nested.append(grid[best][-1])
        print("fold", k, "chosen", best, "outer", round(grid[best][-1], 4), "default", round(grid[(1.0, 0.1)][-1], 4), flush=True)
    for key, v in grid.items(): print(key, round(np.mean(v), 4))
    print("chosen inside each fold", round(np.mean(nested), 4), chosen)


if __name__ == "__main__":
    main()
