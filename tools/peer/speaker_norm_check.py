"""Speaker normalisation check (scikit-learn peer, docs/results/history.md): does standardising each
actor's mean + std statistics with that actor's own clips help on speakers not seen in
training? Kernel ridge as ser trains it (gamma 1/d, lambda 0.1, balanced penalties), 5 folds
of actors (np.array_split of the sorted actors: not exactly ser's folds), 7 classes.

    tools/.venv/bin/python tools/peer/speaker_norm_check.py /tmp/v3.safetensors

The per-actor statistics use the held-out actor's clips without their labels (transductive):
in use, that means a batch of clips from one speaker whose emotions are roughly balanced.
"""
import sys
import numpy as np
from sklearn.metrics import accuracy_score, f1_score
from sklearn_checks import kernel_ridge, load

clips, x, y = load(sys.argv[1])
a = np.array([c["actor"] for c in clips])
classes = np.unique(y)


def krr(xtr, ytr, xte):
    return kernel_ridge(xtr, ytr, xte, 1.0, 0.1, classes)


def per_actor_z(x, a):
    out = x.copy()
    for s in np.unique(a):
        m = a == s
        out[m] = (x[m] - x[m].mean(0)) / (x[m].std(0) + 1e-6)
    return out
actors = np.unique(a)
folds = np.array_split(actors, 5)
def per_actor_c(x, a):
    out = x.copy()
    for s in np.unique(a):
        m = a == s
        out[m] = x[m] - x[m].mean(0)
    return out
def per_actor_z_sub(x, a, n, rng):
    # speaker statistics from only n random clips of that speaker (what a user might have)
    out = x.copy()
    for s in np.unique(a):
        idx = np.where(a == s)[0]
        sub = rng.choice(idx, size=min(n, len(idx)), replace=False)
        out[idx] = (x[idx] - x[sub].mean(0)) / (x[sub].std(0) + 1e-6)
    return out
rng = np.random.default_rng(0)
for name, xx in [("global z", x), ("per-actor z", per_actor_z(x, a)), ("per-actor centre", per_actor_c(x, a)), ("per-actor z from 10 clips", per_actor_z_sub(x, a, 10, rng)), ("per-actor z from 30 clips", per_actor_z_sub(x, a, 30, rng))]:
    res = []
    for f in folds:
        te = np.isin(a, f); tr = ~te
        mu, sd = xx[tr].mean(0), xx[tr].std(0) + 1e-6
        p = krr((xx[tr]-mu)/sd, y[tr], (xx[te]-mu)/sd)
        res.append((accuracy_score(y[te], p), f1_score(y[te], p, average="macro")))
    r = np.array(res)
    print(f"{name:<26} 5-fold by actor: accuracy {r[:,0].mean():.3f} ± {r[:,0].std():.3f}  macro F1 {r[:,1].mean():.3f}")
