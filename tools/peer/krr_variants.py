"""Kernel ridge variants screened on exactly the rows `ser train` fitted and tested on, fold by
fold, before building one into ser (docs/RESULTS.md, "The distribution input"):

    ser train --features F --drop disgust --model krr --input distribution --split actor-folds \
        --folds 5 --speaker-norm --export-split split.safetensors
    python tools/peer/krr_variants.py split.safetensors [VARIANT ...]

`rbf` is ser's own recipe (RBF of gamma 1 / width, lambda 0.1, balanced class weights, targets
+-1) and gives ser's accuracy again; the others change one thing: `laplacian` (the L1 kernel),
`laplacian+rbf` (their mean), `self-training` (the most confident half of each fold's test clips,
labelled by the model, added to its training rows, refitted: what unlabelled clips of unheard
speakers give). Prints each variant's fold accuracies and their mean. Needs numpy, scikit-learn.
"""
import json, sys

import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.metrics.pairwise import laplacian_kernel, rbf_kernel

from arrays import load_safetensors


def fit(kernel, x, y, weights):
    targets = np.where(y[:, None] == np.arange(len(weights))[None], 1.0, -1.0)
    return KernelRidge(alpha=0.1, kernel="precomputed").fit(kernel(x, x), targets, sample_weight=weights[y])


def accuracy(kernel, fold, self_training=False):
    x, y, x_test, y_test, weights = fold
    scores = fit(kernel, x, y, weights).predict(kernel(x_test, x))
    if self_training:
        top2 = np.sort(scores, 1)[:, -2:]
        confident = np.argsort(top2[:, 0] - top2[:, 1])[: len(y_test) // 2]
        x2, y2 = np.vstack([x, x_test[confident]]), np.concatenate([y, scores[confident].argmax(1)])
        scores = fit(kernel, x2, y2, weights).predict(kernel(x_test, x2))
    return float((scores.argmax(1) == y_test).mean())


def main():
    prefix, variants = sys.argv[1], sys.argv[2:] or ["rbf", "laplacian", "laplacian+rbf", "self-training"]
    folds, k = [], 0
    while True:
        try:
            t, meta = load_safetensors(f"{prefix}.fold{k}")
        except FileNotFoundError:
            break
        f64 = lambda a: a.astype(np.float64)
        folds.append((f64(t["x_train"]), t["y_train"].astype(int), f64(t["x_test"]), t["y_test"].astype(int), np.array(json.loads(meta["class_weights"]))))
        k += 1
    gamma = 1.0 / folds[0][0].shape[1]
    kernels = {
        "rbf": lambda a, b: rbf_kernel(a, b, gamma=gamma),
        "laplacian": lambda a, b: laplacian_kernel(a, b, gamma=gamma),
        "laplacian+rbf": lambda a, b: (laplacian_kernel(a, b, gamma=gamma) + rbf_kernel(a, b, gamma=gamma)) / 2,
    }
    for name in variants:
        kernel = kernels.get(name, kernels["rbf"])
        accs = [accuracy(kernel, fold, name == "self-training") for fold in folds]
        print(f"{name}: {np.mean(accs):.4f} ({' / '.join(f'{a:.3f}' for a in accs)})", flush=True)


if __name__ == "__main__":
    main()
