"""How long a clip lasts, screened beside ser's speaker-normalised distribution input by actor,
before building it into ser (docs/RESULTS.md, "The distribution input"):

    ser train --features F --drop disgust --model krr --input distribution --split actor-folds \
        --folds 5 --speaker-norm --export-split split.safetensors
    python tools/peer/duration.py F split.safetensors [PART ...]   # PART: duration, nap, trim (all)

F is the 65-column prosody file (it has `rms` and `voiced`). Per clip: its length, the span
from its first to its last frame within 30 dB of its loudest (rms), and the share of its frames
within those 30 dB; then eGeMAPS-like temporal measures inside the span (voiced runs a second,
mean and deviation of the voiced and unvoiced runs' lengths, rms peaks a second). Each measure
is standardised within each actor (as `--speaker-norm` does to the statistics), then over the
fold's training clips, and appended to ser's exact rows at SCALE times the typical deviation
of a statistics column. Kernel ridge with ser's recipe (krr_variants.fit) is scored fold by
fold at fixed scales, then with the scale chosen inside each fold's training actors (4 inner
folds by actor), which gives a figure free of choosing on the test actors. Also: the
statistics over the frames of the span alone, or over the loud frames alone (silence trimmed),
against the statistics over every frame (kernel ridge on `stats`); and a nuisance attribute
projection (the directions in which the training actors' class means spread, removed).
Needs numpy, scikit-learn.
"""
import json, sys

import numpy as np
from sklearn.metrics.pairwise import rbf_kernel

from arrays import load_safetensors
from krr_variants import fit

HOP_SECONDS = 256 / 16000
TOP_DB = 30


def runs(mask):
    """Lengths (frames) of the runs of True."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def measures(frames, rms, voiced):
    """length, span, loud share; voiced runs a second, voiced and unvoiced runs' mean and
    deviation (s), rms peaks a second."""
    loud = rms >= rms.max() * 10 ** (-TOP_DB / 20)
    first, last = np.flatnonzero(loud)[[0, -1]]
    span = (last - first + 1) * HOP_SECONDS
    v = voiced[first : last + 1] > 0.5
    vr, ur = runs(v) * HOP_SECONDS, runs(~v) * HOP_SECONDS
    r = rms[first : last + 1]
    peaks = ((r[1:-1] > r[:-2]) & (r[1:-1] >= r[2:]) & (r[1:-1] > 0.1 * r.max())).sum()
    mean_sd = lambda x: (x.mean(), x.std()) if len(x) else (0.0, 0.0)
    return [len(rms) * HOP_SECONDS, span, loud.mean(), len(vr) / span, *mean_sd(vr), *mean_sd(ur), peaks / span]


def per_actor(x, actor, keep):
    x = x.copy()
    for a in np.unique(actor):
        own = keep & (actor == a)
        sd = x[own].std(0)
        x[actor == a] = (x[actor == a] - x[own].mean(0)) / np.where(sd > 0, sd, 1)
    return x


def accuracy(a, ya, b, yb, weights):
    gamma = 1.0 / a.shape[1]
    scores = fit(lambda p, q: rbf_kernel(p, q, gamma=gamma), a, ya, weights).predict(rbf_kernel(b, a, gamma=gamma))
    return float((scores.argmax(1) == yb).mean())


def main():
    t, meta = load_safetensors(sys.argv[1])
    names, clips = json.loads(meta["feature_names"]), json.loads(meta["clips"])
    frames, lengths = t["frames"], t["lengths"].astype(int)
    actor = np.array([c["actor"] for c in clips])
    emotion = np.array([c["emotion"] for c in clips])
    keep = emotion != "disgust"
    rms, voiced, f0 = names.index("rms"), names.index("voiced"), names.index("f0")
    m = np.array([measures(frames[i, : lengths[i]], frames[i, : lengths[i], rms], frames[i, : lengths[i], voiced]) for i in range(len(clips))])
    m = per_actor(m, actor, keep)
    folds = []
    for k in range(5):
        s, fold_meta = load_safetensors(f"{sys.argv[2]}.fold{k}")
        test, train = keep & ((actor - 1) % 5 == k), keep & ((actor - 1) % 5 != k)
        # ser's rows are the kept clips in file order: the labels must map one to one.
        for ours, theirs in ((emotion[train], s["y_train"]), (emotion[test], s["y_test"])):
            assert len(ours) == len(theirs) and len(set(zip(ours, theirs))) == len(set(theirs)), "rows not in file order"
        label_of = dict(zip(emotion[train], s["y_train"].astype(int)))
        folds.append((s["x_train"].astype(np.float64), s["y_train"].astype(int), s["x_test"].astype(np.float64), s["y_test"].astype(int), np.array(json.loads(fold_meta["class_weights"])), train, test))

    def rows(fold, cols, scale):
        x, y, xt, yt, w, train, test = fold
        a, b = m[train][:, cols], m[test][:, cols]
        mu, sd = a.mean(0), a.std(0)
        unit = scale * np.sqrt(x[:, : 2 * len(names)].var(0).mean())
        return np.hstack([x, (a - mu) / sd * unit]), y, np.hstack([xt, (b - mu) / sd * unit]), yt, w, actor[train]

    parts = sys.argv[3:] or ["duration", "nap", "trim"]
    scales = [0, 1, 2, 3, 4]
    for label, cols in ([] if "duration" not in parts else [("length", [0]), ("span", [1]), ("length, span, loud share", [0, 1, 2]), ("the temporal measures", [3, 4, 5, 6, 7, 8])]):
        for scale in scales:
            accs = [accuracy(*rows(f, cols, scale)[:5]) for f in folds]
            print(f"{label}, scale {scale}: {np.mean(accs):.4f} ({' / '.join(f'{a:.3f}' for a in accs)})", flush=True)
        outer, chosen = [], []
        for f in folds:
            inner = {}
            for scale in scales:
                x, y, _, _, w, speakers = rows(f, cols, scale)
                inner[scale] = np.mean([accuracy(x[(speakers - 1) % 5 != j], y[(speakers - 1) % 5 != j], x[(speakers - 1) % 5 == j], y[(speakers - 1) % 5 == j], w) for j in set((speakers - 1) % 5)])
            best = max(scales, key=lambda s: (inner[s], -s))
            chosen.append(best)
            outer.append(accuracy(*rows(f, cols, best)[:5]))
        print(f"{label}, scale chosen inside each fold ({chosen}): {np.mean(outer):.4f} ({' / '.join(f'{a:.3f}' for a in outer)})", flush=True)

    # Nuisance attribute projection: the directions in which the actors' class means spread
    # around the classes' means, removed from every row.
    for k in [2, 5, 10, 20] if "nap" in parts else []:
        accs = []
        for x, y, xt, yt, w, train, test in folds:
            speakers = actor[train]
            spread = [x[(speakers == a) & (y == c)].mean(0) - x[y == c].mean(0) for a in np.unique(speakers) for c in np.unique(y)]
            v = np.linalg.svd(np.array(spread), full_matrices=False)[2][:k]
            accs.append(accuracy(x - x @ v.T @ v, y, xt - xt @ v.T @ v, yt, w))
        print(f"nuisance attribute projection, {k} directions: {np.mean(accs):.4f}", flush=True)

    # Silence trimmed: the statistics over the span, or over the loud frames, against every frame.
    def stats(select):
        out = []
        for i in range(len(clips)):
            fr = frames[i, : lengths[i]].astype(np.float64)
            fr = fr[select(fr[:, rms])]
            mu, sd = fr.mean(0), fr.std(0)
            v = fr[:, f0][fr[:, f0] > 0]
            mu[f0], sd[f0] = (v.mean(), v.std()) if len(v) else (0.0, 0.0)
            out.append(np.concatenate([mu, sd]))
        return per_actor(np.array(out), actor, keep)

    def loud(r):
        return r >= r.max() * 10 ** (-TOP_DB / 20)

    def span(r):
        idx = np.flatnonzero(loud(r))
        return np.arange(len(r))[idx[0] : idx[-1] + 1]

    for label, select in [] if "trim" not in parts else [("every frame", lambda r: np.ones(len(r), bool)), ("the span", span), ("the loud frames", loud)]:
        x = stats(select)
        accs = []
        for *_, w, train, test in folds:
            mu, sd = x[train].mean(0), x[train].std(0)
            sd = np.where(sd > 0, sd, 1)
            y = np.array([label_of.get(e, -1) for e in emotion])
            accs.append(accuracy((x[train] - mu) / sd, y[train], (x[test] - mu) / sd, y[test], w))
        print(f"statistics over {label} (stats input): {np.mean(accs):.4f}", flush=True)


if __name__ == "__main__":
    main()
