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


def per_actor(x, a):
    """x's columns standardised within each actor of a."""
    x = x.copy()
    for s in np.unique(a):
        m = a == s; sd = x[m].std(0); x[m] = (x[m] - x[m].mean(0)) / np.where(sd > 0, sd, 1)
    return x


class Rows:
    """The kept clips (disgust dropped) of the 65-column file at `path`: labels `y` of `K`
    classes, actors `a`, and the distribution-length input's parts rebuilt as ser builds them,
    each standardised within each actor (`parts`: statistics, embedding through numpy's
    projection of `seed`, length in seconds); `ns`, `ne`, `half`, `width` are the kernel's
    column counts. Also the frames, lengths, feature names and kept indices, for new parts."""

    def __init__(self, path, seed):
        t, meta = load_safetensors(path)
        self.names, clips, config = json.loads(meta["feature_names"]), json.loads(meta["clips"]), json.loads(meta["config"])
        self.frames, self.lengths = t["frames"].astype(np.float64), t["lengths"].astype(int)
        actor = np.array([c["actor"] for c in clips]); emotion = np.array([c["emotion"] for c in clips])
        self.keep = np.flatnonzero(emotion != "disgust"); classes = sorted(set(emotion[self.keep])); self.K = len(classes)
        self.y = np.array([classes.index(e) for e in emotion[self.keep]]); self.a = actor[self.keep]
        dim = self.frames.shape[2]
        stats = np.hstack([t["vectors"], t["stds"]])[self.keep].astype(np.float64)
        length = (self.lengths[self.keep] - 1) * config["hop"] / config["sample_rate"]
        rng = np.random.default_rng(seed)
        w = rng.normal(0, np.sqrt(2.0 / dim), (dim, 1024)); b = rng.uniform(0, 2 * np.pi, 1024)
        emb = np.array([embedding(self.frames[i, : self.lengths[i]], w, b) for i in self.keep])
        self.parts = [per_actor(stats, self.a), per_actor(emb, self.a), per_actor(length[:, None], self.a)]
        self.ns, self.ne = stats.shape[1], 1024
        self.half, self.width = (self.ns + self.ne) / 2, self.ns + self.ne + 1

    def distances(self, x, tr, te):
        """squared distances train-train and test-train of x's columns scaled on tr."""
        sd = x[tr].std(0); x = (x - x[tr].mean(0)) / np.where(sd > 0, sd, 1)
        return euclidean_distances(x[tr], x[tr], squared=True), euclidean_distances(x[te], x[tr], squared=True)

    def accuracy(self, tr, te, weighted, gamma, lam):
        """kernel ridge (ser's recipe: balanced weights, targets +-1) on the kernel
        exp(-gamma * sum of weighted distances), `weighted` (train, test) pairs; accuracy on te."""
        weighted = list(weighted)
        kk, kt = (np.exp(-gamma * sum(w * d[j] for w, d in weighted)) for j in (0, 1))
        cnt = np.bincount(self.y[tr], minlength=self.K); wc = tr.sum() / (self.K * np.maximum(cnt, 1))
        T = np.where(self.y[tr][:, None] == np.arange(self.K)[None], 1.0, -1.0)
        m = KernelRidge(alpha=lam, kernel="precomputed").fit(kk, T, sample_weight=wc[self.y[tr]])
        return float((m.predict(kt).argmax(1) == self.y[te]).mean())


def nested_folds(accs, grid, a, describe):
    """Each setting of grid over the 5 folds by actor, and the setting chosen inside each fold on
    its training actors (4 inner folds; ties to grid[0]); accs(tr, te) gives every setting's
    accuracy. Prints both, settings named by describe."""
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
        print("fold", k, "chosen", best, "outer", round(outer[best][-1], 4), "first setting", round(outer[grid[0]][-1], 4), flush=True)
    for key, v in outer.items(): print(describe(key) + ":", round(np.mean(v), 4), [round(x, 3) for x in v])
    print("chosen inside each fold", round(np.mean(nested), 4), chosen)


def main():
    grid = GRIDS[sys.argv[2] if len(sys.argv) > 2 else "penalty"]
    r = Rows(sys.argv[1], int(sys.argv[3]) if len(sys.argv) > 3 else 7)
    def accs(tr, te):
        """accuracy on te for every setting of the grid, fitted on tr (each part scaled on tr)."""
        d = [r.distances(x, tr, te) for x in r.parts]
        # each part's squared distance weighted: the halves equal at ew 1, the length ls times a
        # statistics column's deviation
        return {(g, lam, ew, ls): r.accuracy(tr, te, zip([r.half / r.ns, r.half / r.ne * ew, r.half / r.ns * ls * ls], d), g / r.width, lam) for g, lam, ew, ls in grid}
    nested_folds(accs, grid, r.a, lambda key: "gamma %g lambda %g embedding %g length %g" % key)


if __name__ == "__main__":
    main()
