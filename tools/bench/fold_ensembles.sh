#!/usr/bin/env bash
# Cross-validated ensembles by actor: for every fold K whose models all exist, scores the models
# `ser train --split actor-folds --out PREFIX` saved (PREFIX.foldK), their class probabilities
# averaged, on the actors fold K held out (`ser eval --held-out-fold K`), then the mean and
# population sd over the folds. One model prefix scores that model alone (the fold's own figure
# again, a check that eval and train agree).
#   tools/bench/fold_ensembles.sh FEATURES PREFIX [PREFIX ...]
# Environment: SER_BIN (default target/release/ser), SER_FOLDS (default 5), SER_FOLD_LIST (the
# folds to score, default all: a fold still training has a model file already, its best epoch
# so far).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { echo "usage: $0 FEATURES PREFIX [PREFIX ...]" >&2; exit 2; }
features="$1"; shift
ser="${SER_BIN:-target/release/ser}"
folds="${SER_FOLDS:-5}"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
scores=()
for k in ${SER_FOLD_LIST:-$(seq 0 $((folds - 1)))}; do
    models=()
    for prefix in "$@"; do
        [ -f "$prefix.fold$k" ] || { echo "fold $k: no $prefix.fold$k, skipped"; continue 2; }
        models+=(--model "$prefix.fold$k")
    done
    # ser's progress lines are kept aside and shown only when it fails.
    report=$("$ser" eval "${models[@]}" --features "$features" --held-out-fold "$k" --folds "$folds" --json 2>"$log") ||
        { cat "$log" >&2; echo "fold $k: ser eval failed" >&2; exit 1; }
    # Full precision for the mean; four decimals shown.
    line=$(python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["accuracy"], r["macro_avg"]["f1"])' <<<"$report")
    printf 'fold %s: accuracy %.4f, macro F1 %.4f\n' "$k" ${line}
    scores+=("$line")
done
printf '%s\n' "${scores[@]}" | python3 -c '
import statistics, sys
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
if rows:
    acc, f1 = zip(*rows)
    print(f"{len(rows)} folds: accuracy {statistics.mean(acc):.4f} ± {statistics.pstdev(acc):.4f}, macro F1 {statistics.mean(f1):.4f} ± {statistics.pstdev(f1):.4f}")'
