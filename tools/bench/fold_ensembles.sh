#!/usr/bin/env bash
# Cross-validated ensembles by actor (the commands in docs/results/history.md name this script):
#   tools/bench/fold_ensembles.sh FEATURES PREFIX [PREFIX ...]
# is `tools/bench/ensembles.sh folds FEATURES PREFIX ...`; SER_FOLD_LIST is its SER_SPLITS.
[ -n "${SER_FOLD_LIST:-}" ] && export SER_SPLITS="$SER_FOLD_LIST"
exec "$(dirname "$0")/ensembles.sh" folds "$@"
