"""scikit-learn peer checks on a feature file written by `ser features` (the exploration behind
ser's kernel ridge recipe, docs/results/history.md): an RBF SVM and kernel ridge classification on the
time means + standard deviations, 7 classes, stratified 80/20 splits (scikit-learn's own,
random_state 0-2: not the same partitions as ser's seeds).

    tools/.venv/bin/python tools/peer/sklearn_checks.py /tmp/v2.safetensors
"""
import json, sys
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file
from sklearn.metrics import accuracy_score, f1_score
from sklearn.metrics.pairwise import rbf_kernel
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

def load(path):
    """(clips metadata, time means + standard deviations, emotion) without disgust."""
    with safe_open(path, "np") as f:
        meta = f.metadata()
    t = load_file(path)
    clips = json.loads(meta["clips"])
    emotion = np.array([c["emotion"] for c in clips])
    keep = emotion != "disgust"
    return [c for c, k in zip(clips, keep) if k], np.concatenate([t["vectors"], t["stds"]], 1)[keep], emotion[keep]


def splits():
    for seed in (0, 1, 2):
        xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)
        sc = StandardScaler().fit(xtr)
        yield sc.transform(xtr), sc.transform(xte), ytr, yte


def kernel_ridge(xtr, ytr, xte, gamma_scale, lam, classes):
    """ser's kernel ridge classification: RBF gamma gamma_scale / d, +-1 targets, ridge penalty
    lam scaled per example by 1 / its balanced class weight."""
    target = (ytr[:, None] == classes[None, :]).astype(float) * 2 - 1
    counts = target.clip(0).sum(0)
    w = (len(ytr) / (len(classes) * counts))[target.argmax(1)]
    g = gamma_scale / xtr.shape[1]
    a = np.linalg.solve(rbf_kernel(xtr, xtr, gamma=g) + lam * np.diag(1 / w), target)
    return classes[(rbf_kernel(xte, xtr, gamma=g) @ a).argmax(1)]


def report(name, preds):
    r = np.array([(accuracy_score(yte, p), f1_score(yte, p, average="macro")) for p, yte in preds])
    print(f"{name:<34} accuracy {r[:, 0].mean():.3f} ± {r[:, 0].std():.3f}  macro F1 {r[:, 1].mean():.3f}")


if __name__ == "__main__":
    _, x, y = load(sys.argv[1])
    classes = np.unique(y)
    data = list(splits())
    for c in (3, 10, 30):
        report(f"SVM rbf C={c}", [(SVC(C=c, class_weight="balanced").fit(a, ya).predict(b), yb) for a, b, ya, yb in data])
    for gs in (0.5, 1, 2):
        for lam in (1e-3, 1e-2, 1e-1):
            report(f"kernel ridge gamma={gs}/d lambda={lam}", [(kernel_ridge(a, ya, b, gs, lam, classes), yb) for a, b, ya, yb in data])
