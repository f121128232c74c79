#!/usr/bin/env bash
# The sequence models' accuracy tables (issue 13's protocol): 7 classes (disgust dropped),
# balanced class weights, 30 epochs, for each model: random stratified 80/20 over seeds 0-4 and
# 5-fold by actor, with and without --speaker-norm. One log per run under OUT; a summary line
# per run at the end of each log. Hours on lavapipe: run it in the background and read the logs
# as they finish (tools/bench/sequence_tables_summary.py OUT prints the table so far). Breadth
# first: every model's random seeds, then every model's folds, then the same with
# --speaker-norm, so that a stopped run leaves whole rows behind.
#   tools/bench/sequence_tables.sh [FEATURES] [OUT] [MODELS]
# Environment: SER_BIN (the binary; default target/release/ser), SER_TABLE_JOBS (runs at once,
# default 1: a GPU has room for several; on two CPU cores two jobs with LP_NUM_THREADS=0 run at
# the total rate of one job on both cores, session 22), SER_TABLE_MODELS (where the
# checkpoints go, default OUT: the refined CNN's are 26 MB each), SER_TABLE_ONLY
# (an extended regex: only the runs whose name matches, in the plan's order, e.g.
# 'cnn-seed|cnn-lstm-norm-fold' to take the speaker-independent rows before the rest).
set -uo pipefail
cd "$(dirname "$0")/../.."
features="${1:-/tmp/ser-bench-features.safetensors}"
out="${2:-/tmp/ser-sequence-tables}"
models="${3:-cnn-lstm lstm cnn}"
# A copy of the binary: a rebuild while this runs must not change the code halfway.
ser="${SER_BIN:-target/release/ser}"
parallel="${SER_TABLE_JOBS:-1}"
checkpoints="${SER_TABLE_MODELS:-$out}"
only="${SER_TABLE_ONLY:-.}"
mkdir -p "$out" "$checkpoints"
[ -f "$features" ] || $ser features --data ../shared/data/ravdess --out "$features"
# The model file a run saves (its --out, with .foldK for one fold of a cross-validation).
checkpoint_of() {
    local file="" fold=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --out) file="$2"; shift ;;
            --fold) fold="$2"; shift ;;
        esac
        shift
    done
    echo "$file${fold:+.fold$fold}"
}
# One table run's `ser train` with ARGS, its output appended to LOG.
train_into() {
    local log="$1"; shift
    $ser train --features "$features" --drop disgust --input frames --epochs 30 "$@" >> "$log" 2>&1
}
run() {
    local name="$1"; shift
    local log="$out/$name.log" checkpoint rc
    [ -s "$log" ] && grep -q "^done" "$log" && return
    checkpoint="$(checkpoint_of "$@")"
    # A run stopped part-way left its model at its best epoch so far (saved as it went):
    # continue from there, which replays the epochs an uninterrupted run would have had. If
    # that fails (a binary from before fold resumes, a model already at its last epoch), the
    # run starts afresh. The log keeps what came before.
    if [ -s "$log" ] && [ -s "$checkpoint" ]; then
        echo "== $name: resumed $(date -u +%H:%M:%S): ser train $* --resume $checkpoint" >> "$log"
        train_into "$log" "$@" --resume "$checkpoint"
        rc=$?
        [ $rc -eq 0 ] && { echo "done rc=0 $(date -u +%H:%M:%S)" >> "$log"; return; }
        echo "== $name: resuming failed (rc=$rc); afresh $(date -u +%H:%M:%S)" >> "$log"
    else
        echo "== $name: ser train $*" > "$log"
    fi
    train_into "$log" "$@"
    echo "done rc=$? $(date -u +%H:%M:%S)" >> "$log"
}
# The runs in order, one line each: NAME ARGS...
plan() {
    for norm in "" "--speaker-norm"; do
        for model in $models; do
            tag="$model${norm:+-norm}"
            for seed in 0 1 2 3 4; do
                echo "$tag-seed$seed --model $model --seed $seed --out $checkpoints/$tag-seed$seed.safetensors $norm"
            done
        done
        for model in $models; do
            tag="$model${norm:+-norm}"
            # One process per fold, so that a stopped run resumes at the fold it was in (unless a
            # whole cross-validation in one log, as session 9 ran it, has finished).
            grep -qs "^done" "$out/$tag-actors.log" && continue
            for fold in 0 1 2 3 4; do
                # The fold's model goes to $tag-fold.safetensors.fold$fold, for ensembles scored
                # with `ser eval --held-out-fold $fold`.
                echo "$tag-fold$fold --model $model --split actor-folds --folds 5 --fold $fold --seed 0 --out $checkpoints/$tag-fold.safetensors $norm"
            done
        done
    done
}
while read -r line; do
    # shellcheck disable=SC2086 # the plan's words are the arguments
    if [ "$parallel" -le 1 ]; then
        run $line
    else
        while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do wait -n; done
        run $line &
    fi
done < <(plan | grep -E -- "^($only)[^ ]* ")
wait
