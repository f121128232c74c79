#!/usr/bin/env bash
# Ensembles scored split by split on the clips each split held out, their class probabilities
# averaged, then the mean and population sd over the splits. One model alone gives its own
# figure again (a check that eval and train agree).
#
#   tools/bench/ensembles.sh folds FEATURES PREFIX [PREFIX ...]
#     Cross-validation by actor: for every fold K whose models all exist, the models
#     `ser train --split actor-folds --out PREFIX` saved (PREFIX.foldK), on the actors fold K
#     held out (`ser eval --held-out-fold K`).
#   tools/bench/ensembles.sh seeds FEATURES PATTERN [PATTERN ...]
#     Random splits: for every seed S whose models all exist, PATTERN with {S} replaced by S
#     (e.g. runs/krr-seed{S}.safetensors, the models of `ser train --seed S`), on the clips
#     that seed's split held out (`ser eval --held-out-of-seed S`).
#
# Environment: SER_BIN (default target/release/ser), SER_FOLDS (default 5), SER_SPLITS (the
# folds or seeds to score; default every fold, or seeds 0-4; a run still training has a model
# file already, its best epoch so far).
set -euo pipefail
cd "$(dirname "$0")/../.."
usage="usage: $0 folds FEATURES PREFIX [PREFIX ...] | $0 seeds FEATURES PATTERN [PATTERN ...]"
[ $# -ge 3 ] || { echo "$usage" >&2; exit 2; }
mode="$1"; features="$2"; shift 2
ser="${SER_BIN:-target/release/ser}"
folds="${SER_FOLDS:-5}"
case "$mode" in
    folds) splits="${SER_SPLITS:-$(seq 0 $((folds - 1)))}" ;;
    seeds)
        splits="${SER_SPLITS:-0 1 2 3 4}"
        for pattern in "$@"; do
            [[ "$pattern" == *"{S}"* ]] || { echo "$pattern: a seed's pattern needs {S} where the seed goes" >&2; exit 2; }
        done
        ;;
    *) echo "$usage" >&2; exit 2 ;;
esac
log=$(mktemp)
trap 'rm -f "$log"' EXIT
scores=()
for k in $splits; do
    models=()
    for name in "$@"; do
        case "$mode" in
            folds) file="$name.fold$k" ;;
            seeds) file="${name//\{S\}/$k}" ;;
        esac
        [ -f "$file" ] || { echo "${mode%s} $k: no $file, skipped"; continue 2; }
        models+=(--model "$file")
    done
    case "$mode" in
        folds) held_out=(--held-out-fold "$k" --folds "$folds") ;;
        seeds) held_out=(--held-out-of-seed "$k") ;;
    esac
    # ser's progress lines are kept aside and shown only when it fails.
    report=$("$ser" eval "${models[@]}" --features "$features" "${held_out[@]}" --json 2>"$log") ||
        { cat "$log" >&2; echo "${mode%s} $k: ser eval failed" >&2; exit 1; }
    # Full precision for the mean; four decimals shown.
    line=$(python3 -c 'import json, sys; r = json.load(sys.stdin); print(r["accuracy"], r["macro_avg"]["f1"], r["uar"])' <<<"$report")
    printf '%s %s: accuracy %.4f, macro F1 %.4f, UAR %.4f\n' "${mode%s}" "$k" ${line}
    scores+=("$line")
done
printf '%s\n' "${scores[@]}" | python3 -c '
import statistics, sys
rows = [tuple(map(float, l.split())) for l in sys.stdin if l.strip()]
if rows:
    acc, f1, uar = zip(*rows)
    print(f"{len(rows)} '"$mode"': accuracy {statistics.mean(acc):.4f} ± {statistics.pstdev(acc):.4f}, macro F1 {statistics.mean(f1):.4f} ± {statistics.pstdev(f1):.4f}, UAR {statistics.mean(uar):.4f} ± {statistics.pstdev(uar):.4f}")'
