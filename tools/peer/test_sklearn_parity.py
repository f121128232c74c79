#!/usr/bin/env python3
"""ser's classical models against scikit-learn on a small synthetic problem (CI runs it).

    python tools/peer/test_sklearn_parity.py SER_BINARY     (needs numpy and scikit-learn)

What it checks:

- A learnable corpus is written as one folder per class: 4 classes x 60 clips of 0.5 s, voiced
  tones whose pitch and brightness ranges overlap between classes, so every model errs on some
  clips and a different vote shows.
- `ser train` fits knn, svm, rf and gnb on its time means + deviations (`--input stats`), and
  `--export-split` writes the exact rows each model fitted and was tested on.
- scikit-learn fits the same rows, with ser's settings spelled out (below), and its confusion
  matrix on the test rows is compared with `ser eval --held-out-of-seed 0`'s:
  - knn (brute force): the same neighbours vote, so the matrices must be equal;
  - svm (libsvm's SVC in both): at most a tenth of the 48 test clips may differ, since ser
    labels by the coupled probabilities where scikit-learn's `predict` counts votes;
  - rf: both forests are random, so the accuracies must agree within 0.1;
  - gnb (GaussianNB, the contributing guide's worked example): the same model, so the matrices
    must be equal.

ser's settings, where its defaults differ from scikit-learn's (docs/guide/training.md):

| setting | ser | scikit-learn |
|---|---|---|
| SVC `C` | 10 | 1 |
| SVC labels | argmax of the coupled probabilities | one-vs-one votes (`predict`) |
| forest trees | 500 | 100 |
| forest split thresholds | 64 quantile bins per feature | every midpoint |

Both sides weigh classes by their balanced weights.
"""
import json
import os
import subprocess
import sys
import tempfile
import wave

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, confusion_matrix
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from arrays import load_safetensors

CLASSES = ["neutral", "happy", "sad", "angry"]


def write_wav(path, samples, rate=16000):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pcm = np.clip(np.round(samples * 32767), -32768, 32767).astype("<i2")
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def clip(k, i, rate=16000):
    rng = np.random.default_rng(1000 * k + i)
    t = np.arange(int(0.5 * rate)) / rate
    # Overlapping classes: pitch ranges and brightness overlap, so every model errs on some clips
    # and a different vote shows.
    f0 = 120 * [1.0, 1.25, 0.85, 1.5][k] * (1 + 0.2 * rng.uniform(-1, 1))
    bright = [0.4, 0.55, 0.3, 0.65][k] + 0.2 * rng.uniform(-1, 1)
    voiced = sum(bright ** (h - 1) * np.sin(2 * np.pi * h * f0 * t) for h in range(1, 10))
    return 0.2 * voiced * np.sin(np.pi * t / 0.5) + 0.05 * rng.standard_normal(t.size)


def main():
    ser = sys.argv[1]
    env = dict(os.environ, SER_AUTOTUNE="off")
    work = tempfile.mkdtemp(prefix="ser-sklearn-")
    for k, name in enumerate(CLASSES):
        for i in range(60):
            write_wav(os.path.join(work, "data", name, f"take{i:02}.wav"), clip(k, i))

    def run(*args):
        r = subprocess.run([ser, *args], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            sys.exit(f"ser {' '.join(args)}: {r.stderr[-2000:]}")
        return r.stdout

    features = os.path.join(work, "f.safetensors")
    run("features", "--no-cache", "--data", os.path.join(work, "data"), "--out", features)
    failures = []
    for kind, flags, make in [
        ("knn", [], lambda: KNeighborsClassifier(n_neighbors=5, weights="uniform", algorithm="brute")),
        ("svm", [], lambda: SVC(C=10.0, gamma="scale", class_weight="balanced", probability=True, random_state=0)),
        ("rf", ["--trees", "200"], lambda: RandomForestClassifier(n_estimators=200, max_features="sqrt", class_weight="balanced", random_state=0)),
        ("gnb", [], lambda: GaussianNB()),
    ]:
        model, split = os.path.join(work, f"{kind}.safetensors"), os.path.join(work, f"{kind}-split.safetensors")
        run("train", "--features", features, "--model", kind, "--input", "stats", *flags, "--out", model, "--export-split", split)
        ours = json.loads(run("eval", "--held-out-of-seed", "0", "--json", "--model", model, "--features", features))
        t, _ = load_safetensors(split)
        peer = make().fit(t["x_train"], t["y_train"])
        predicted = peer.predict(t["x_test"])
        theirs = confusion_matrix(t["y_test"], predicted, labels=range(len(CLASSES)))
        mine = np.array(ours["confusion"])
        differ = int(np.abs(mine - theirs).sum() // 2)
        accuracy = accuracy_score(t["y_test"], predicted)
        line = f"{kind}: ser accuracy {ours['accuracy']:.3f}, scikit-learn {accuracy:.3f}; confusion matrices differ by {differ} clips of {len(predicted)}"
        print(line)
        if mine.sum() != len(predicted):
            failures.append(f"{kind}: ser scored {mine.sum()} clips, scikit-learn {len(predicted)}")
        ok = {"knn": differ == 0, "svm": differ <= len(predicted) // 10, "rf": abs(ours["accuracy"] - accuracy) <= 0.1, "gnb": differ == 0}[kind]
        if not ok:
            failures.append(line)
    if failures:
        sys.exit("scikit-learn parity failed:\n" + "\n".join(failures))
    print("scikit-learn parity: knn and gnb equal, svm within a tenth of the clips, rf within 0.1")


if __name__ == "__main__":
    main()
