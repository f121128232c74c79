"""CopyPaste augmentation (Pappagari et al., ICASSP 2021) screened for kernel ridge by actor
with speaker normalisation, before building it into ser (docs/RESULTS.md, "The distribution
input"):

    python tools/peer/copypaste.py F [COPIES]

F is the 65-column prosody file. The rows are rebuilt here as ser builds the
distribution-length input (clip statistics with f0 over voiced frames, an embedding of the
clip-standardised frames through 1024 random Fourier features of width 1 / columns, the clip's
length; every part standardised within each actor, then over the training rows; the halves
weighted equally and the length 4 times a statistics column), with numpy's own projection, so
the baseline is within the projection seed's half point of ser's 0.770. CopyPaste makes new
training clips of the training actors by joining two clips of one actor end to end, frames
after frames: an emotional clip with a neutral one (NE, labelled with the emotion, in either
order), or with another clip of the same emotion (EE). Each variant adds COPIES (default 1)
such clips per training clip; the test actors' clips are never touched. The joined clip's
length is the emotional clip's own (a joined clip's tempo is its parts'). Needs numpy,
scikit-learn.
"""
import json, sys

import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import rbf_kernel

from arrays import load_safetensors

WIDTH, SEED, LENGTH_SCALE = 1024, 7, 4.0


def summary(frames, f0):
    """Each column's mean and deviation over the frames; f0's over its voiced frames (0 without)."""
    mu, sd = frames.mean(0), frames.std(0)
    v = frames[:, f0][frames[:, f0] > 0]
    mu[f0], sd[f0] = (v.mean(), v.std()) if len(v) else (0.0, 0.0)
    return np.concatenate([mu, sd])


def embedding(frames, w, b):
    mu, sd = frames.mean(0), frames.std(0)
    z = np.where(sd > 1e-5 * (1 + np.abs(mu)), (frames - mu) / np.where(sd > 0, sd, 1), 0.0)
    return np.cos(z @ w + b).mean(0)


def fit_score(xa, ya, xb, yb, classes):
    counts = np.bincount(ya, minlength=classes)
    weights = len(ya) / (classes * np.maximum(counts, 1))
    gamma = 1.0 / xa.shape[1]
    targets = np.where(ya[:, None] == np.arange(classes)[None], 1.0, -1.0)
    m = KernelRidge(alpha=0.1, kernel="precomputed").fit(rbf_kernel(xa, xa, gamma=gamma), targets, sample_weight=weights[ya])
    return float((m.predict(rbf_kernel(xb, xa, gamma=gamma)).argmax(1) == yb).mean())


def main():
    t, meta = load_safetensors(sys.argv[1])
    copies = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    names, clips, config = json.loads(meta["feature_names"]), json.loads(meta["clips"]), json.loads(meta["config"])
    frames, lengths = t["frames"].astype(np.float64), t["lengths"].astype(int)
    actor = np.array([c["actor"] for c in clips])
    emotion = np.array([c["emotion"] for c in clips])
    keep = np.flatnonzero(emotion != "disgust")
    classes = sorted(set(emotion[keep]))
    label = np.array([classes.index(e) if e in classes else -1 for e in emotion])
    f0, dim = names.index("f0"), frames.shape[2]
    rng = np.random.default_rng(SEED)
    w = rng.normal(0, np.sqrt(2.0 / dim), (dim, WIDTH))
    b = rng.uniform(0, 2 * np.pi, WIDTH)
    seconds = lambda n: (n - 1) * config["hop"] / config["sample_rate"]

    def row(parts):
        fr = np.concatenate([frames[i, : lengths[i]] for i in parts])
        return np.concatenate([summary(fr, f0), embedding(fr, w, b)])

    # The originals, checked against the file's own statistics.
    base = np.array([row([i]) for i in keep])
    stored = np.hstack([t["vectors"], t["stds"]])[keep]
    assert np.abs(base[:, : 2 * dim] - stored).max() < 1e-3 * (1 + np.abs(stored).max()), "statistics differ from the file's"
    length = np.array([seconds(lengths[i]) for i in keep])
    rows = {i: (base[k], length[k]) for k, i in enumerate(keep)}

    # Joined clips of every actor, the emotional clip first in its label and length.
    joined = {"NE": [], "EE": []}
    for a in np.unique(actor):
        own = [i for i in keep if actor[i] == a]
        neutral = [i for i in own if emotion[i] == "neutral"]
        for i in own:
            if emotion[i] == "neutral":
                continue
            same = [j for j in own if emotion[j] == emotion[i] and j != i]
            for _ in range(copies):
                n = int(rng.choice(neutral))
                joined["NE"].append((a, label[i], seconds(lengths[i]), row([i, n] if rng.random() < 0.5 else [n, i])))
                e = int(rng.choice(same))
                joined["EE"].append((a, label[i], seconds(lengths[i]), row([i, e])))

    def normalised(a, x, length_s, stats_of):
        mu, sd, lmu, lsd = stats_of[a]
        return np.append((x - mu) / sd, (length_s - lmu) / lsd)

    stats_of = {}
    for a in np.unique(actor):
        own = np.array([rows[i][0] for i in keep if actor[i] == a])
        ln = np.array([rows[i][1] for i in keep if actor[i] == a])
        sd = own.std(0)
        stats_of[a] = (own.mean(0), np.where(sd > 0, sd, 1), ln.mean(), ln.std())
    x_all = np.array([normalised(actor[i], *rows[i], stats_of) for i in keep])
    y_all, a_all = label[keep], actor[keep]
    extra = {k: (np.array([normalised(a, x, s, stats_of) for a, _, s, x in v]), np.array([y for _, y, _, _ in v]), np.array([a for a, *_ in v])) for k, v in joined.items()}

    stats_cols = 2 * dim
    half = (x_all.shape[1] - 1) / 2

    def scaled(train_x, *others):
        mu, sd = train_x.mean(0), train_x.std(0)
        sd = np.where(sd > 0, sd, 1)
        weight = np.full(train_x.shape[1], np.sqrt(half / (train_x.shape[1] - 1 - stats_cols)))
        weight[:stats_cols] = np.sqrt(half / stats_cols)
        weight[-1] = np.sqrt(half / stats_cols) * LENGTH_SCALE
        return [(m - mu) / sd * weight for m in (train_x, *others)]

    for variant in ["none", "NE", "EE", "NE+EE"]:
        accs = []
        for k in range(5):
            train, test = (a_all - 1) % 5 != k, (a_all - 1) % 5 == k
            xa, ya = x_all[train], y_all[train]
            xs, ys = [xa], [ya]
            for part in variant.split("+") if variant != "none" else []:
                xe, ye, ae = extra[part]
                own = (ae - 1) % 5 != k
                xs.append(xe[own])
                ys.append(ye[own])
            # The scaler is the originals' (augmented rows must not move it).
            xa_s, xt_s, *aug = scaled(xa, x_all[test], *xs[1:])
            accs.append(fit_score(np.vstack([xa_s, *aug]), np.concatenate(ys), xt_s, y_all[test], len(classes)))
        print(f"{variant}, {copies} a clip: {np.mean(accs):.4f} ({' / '.join(f'{a:.3f}' for a in accs)})", flush=True)


if __name__ == "__main__":
    main()
