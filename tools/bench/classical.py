"""ser's classical models (rf, knn, svm) against scikit-learn's on the same rows, side by side:
random 80/20 splits over several seeds and 5-fold cross-validation by actor, for each input.

    python tools/bench/classical.py --features F.safetensors [--ser target/release/ser]
        [--models rf,knn,svm] [--inputs stats,vectors] [--seeds 0,1,2,3,4] [--folds 5]
        [--speaker-norm] [--out results.json]

Each ser run writes its split (`--export-split`), and tools/peer/classical.py's models are fitted
on exactly those rows. Prints a Markdown table (accuracy and macro F1 as mean +- sd; seconds of
the final fit + test prediction, median over the seeds) and writes every number to --out.
Needs numpy and scikit-learn (tools/peer/setup.sh, or any venv with both).
"""
import argparse, json, os, re, statistics, subprocess, sys, tempfile, time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "peer"))
import classical as peer  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score  # noqa: E402
from sklearn.neighbors import KNeighborsClassifier  # noqa: E402
from sklearn.svm import SVC  # noqa: E402

FLAGS = {"knn": ["--knn-k", "5", "--knn-weights", "distance"], "svm": ["--svm-c", "10"], "rf": ["--trees", "500"]}


def peer_model(kind, seed):
    """scikit-learn's model with the settings FLAGS gives ser (all cores)."""
    if kind == "rf":
        return RandomForestClassifier(n_estimators=500, max_features="sqrt", class_weight="balanced", n_jobs=-1, random_state=seed)
    if kind == "knn":
        return KNeighborsClassifier(n_neighbors=5, weights="distance", algorithm="brute", n_jobs=-1)
    return SVC(C=10.0, gamma="scale", class_weight="balanced", probability=True, random_state=seed)


def run_peer(kind, split, seed):
    t, _ = peer.load_safetensors(split)
    m = peer_model(kind, seed)
    start = time.perf_counter()
    m.fit(t["x_train"], t["y_train"])
    pred = m.predict(t["x_test"])
    seconds = time.perf_counter() - start
    out = {"accuracy": accuracy_score(t["y_test"], pred), "macro_f1": f1_score(t["y_test"], pred, average="macro"), "seconds": seconds}
    if kind == "svm":
        # ser labels by the coupled probabilities; scikit-learn's predict by one-vs-one votes.
        proba = m.predict_proba(t["x_test"]).argmax(1)
        out["proba_accuracy"] = accuracy_score(t["y_test"], proba)
    return out


def record(model_path):
    with open(model_path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    return json.loads(header["__metadata__"]["training"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", required=True)
    ap.add_argument("--ser", default="target/release/ser")
    ap.add_argument("--models", default="rf,knn,svm")
    ap.add_argument("--inputs", default="stats,vectors")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--speaker-norm", action="store_true")
    ap.add_argument("--out")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ser-classical-")
    env = dict(os.environ, SER_AUTOTUNE=os.environ.get("SER_AUTOTUNE", "off"))
    results = []
    for inp in a.inputs.split(","):
        for kind in a.models.split(","):
            base = [a.ser, "train", "--features", a.features, "--drop", "disgust", "--input", inp, "--model", kind] + FLAGS[kind]
            if a.speaker_norm:
                base.append("--speaker-norm")
            row = {"input": inp, "model": kind, "random": [], "folds": []}
            for seed in [int(s) for s in a.seeds.split(",")]:
                model, split = os.path.join(tmp, "m.safetensors"), os.path.join(tmp, "split.safetensors")
                subprocess.run(base + ["--seed", str(seed), "--out", model, "--export-split", split], check=True, capture_output=True, env=env)
                r = record(model)
                ours = {"accuracy": r["test_accuracy"], "macro_f1": r["test_macro_f1"], "seconds": r["fit_seconds"] + r["test_predict_seconds"]}
                row["random"].append({"seed": seed, "ser": ours, "sklearn": run_peer(kind, split, seed)})
                print(f"{inp} {kind} seed {seed}: ser {ours['accuracy']:.3f}, sklearn {row['random'][-1]['sklearn']['accuracy']:.3f}", file=sys.stderr)
            split = os.path.join(tmp, "fold.safetensors")
            p = subprocess.run(base + ["--split", "actor-folds", "--folds", str(a.folds), "--export-split", split], check=True, capture_output=True, text=True, env=env)
            fold_lines = re.findall(r"fold (\d+): actors .*?: accuracy ([0-9.]+), macro F1 ([0-9.]+)", p.stderr)
            for fold, acc, f1 in fold_lines:
                theirs = run_peer(kind, f"{split}.fold{fold}", 0)
                row["folds"].append({"fold": int(fold), "ser": {"accuracy": float(acc), "macro_f1": float(f1)}, "sklearn": theirs})
            print(f"{inp} {kind} folds done", file=sys.stderr)
            results.append(row)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)

    def ms(vals):
        return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals) if len(vals) > 1 else 0:.3f}"

    print("| input | model | protocol | ser accuracy | sklearn accuracy | ser macro F1 | sklearn macro F1 | ser s (fit+predict) | sklearn s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        for proto, key in [(f"random 80/20 x {len(r['random'])}", "random"), (f"{len(r['folds'])}-fold by actor", "folds")]:
            runs = r[key]
            if not runs:
                continue
            col = lambda who, what: ms([x[who][what] for x in runs])  # noqa: E731
            secs = lambda who: f"{statistics.median([x[who]['seconds'] for x in runs]):.2f}" if "seconds" in runs[0][who] else ""  # noqa: E731
            extra = ""
            if r["model"] == "svm":
                extra = f" (by probabilities {ms([x['sklearn']['proba_accuracy'] for x in runs])})"
            print(f"| {r['input']} | {r['model']} | {proto} | {col('ser', 'accuracy')} | {col('sklearn', 'accuracy')}{extra} | {col('ser', 'macro_f1')} | {col('sklearn', 'macro_f1')} | {secs('ser')} | {secs('sklearn')} |")


if __name__ == "__main__":
    main()
