"""scikit-learn's Random Forest, k-nearest neighbours and SVM on exactly the rows `ser train`
fitted and tested on, for side-by-side accuracy and fit + predict time (tools/bench/classical.sh).

    ser train --features F --drop disgust --input stats --model svm --out m.safetensors \
        --export-split split.safetensors
    python tools/peer/classical.py split.safetensors [--models rf,knn,svm] [--trees 500]
        [--svm-c 10] [--knn-k 5] [--knn-weights uniform] [--seed 0] [--jobs -1]

The split file holds x_train/y_train (what ser's final fit sees: training and validation clips,
scaled as the model reads them) and x_test/y_test. Settings mirror ser's flags: balanced class
weights; SVC(C, gamma="scale", probability=True), labels from predict (libsvm's votes);
RandomForestClassifier(n_estimators, max_features="sqrt", bootstrap); KNeighborsClassifier
(brute-force Euclidean). Seconds are fit + predict on the test rows, all cores (n_jobs=-1),
after import. Prints one JSON line per model. Needs only numpy and scikit-learn.
"""
import argparse, json, time

from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, f1_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.svm import SVC

from arrays import load_safetensors  # noqa: F401 (tools/bench/classical.py reads it from here)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("split")
    ap.add_argument("--models", default="rf,knn,svm")
    ap.add_argument("--trees", type=int, default=500)
    ap.add_argument("--max-depth", type=int, default=None)
    ap.add_argument("--min-samples-leaf", type=int, default=1)
    ap.add_argument("--svm-c", type=float, default=10.0)
    ap.add_argument("--knn-k", type=int, default=5)
    ap.add_argument("--knn-weights", default="uniform", choices=["uniform", "distance"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=-1)
    a = ap.parse_args()
    t, _ = load_safetensors(a.split)
    xtr, ytr, xte, yte = t["x_train"], t["y_train"], t["x_test"], t["y_test"]
    make = {
        "rf": lambda: RandomForestClassifier(
            n_estimators=a.trees, max_depth=a.max_depth, min_samples_leaf=a.min_samples_leaf,
            max_features="sqrt", class_weight="balanced", n_jobs=a.jobs, random_state=a.seed),
        "knn": lambda: KNeighborsClassifier(n_neighbors=a.knn_k, weights=a.knn_weights, algorithm="brute", n_jobs=a.jobs),
        "svm": lambda: SVC(C=a.svm_c, gamma="scale", class_weight="balanced", probability=True, random_state=a.seed),
    }
    for name in a.models.split(","):
        model = make[name]()
        start = time.perf_counter()
        model.fit(xtr, ytr)
        fitted = time.perf_counter()
        pred = model.predict(xte)
        done = time.perf_counter()
        print(json.dumps({
            "model": name,
            "accuracy": accuracy_score(yte, pred),
            "macro_f1": f1_score(yte, pred, average="macro"),
            "fit_seconds": fitted - start,
            "predict_seconds": done - fitted,
            "train_rows": int(len(ytr)),
            "test_rows": int(len(yte)),
        }))


if __name__ == "__main__":
    main()
