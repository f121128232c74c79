#!/usr/bin/env bash
# Training speed, ser (GPU, WGSL) against the reference recipe in Keras/TensorFlow (CPU), side by
# side in one run on the same feature file, same architecture, same split sizes.
#   tools/bench/training.sh [FEATURES] [EPOCHS]
# FEATURES: a file from `ser features` (default: extracted from ../shared/data/ravdess into
# /tmp/ser-bench-features.safetensors). Needs tools/peer/setup.sh (TensorFlow venv).
set -euo pipefail
cd "$(dirname "$0")/../.."
features="${1:-/tmp/ser-bench-features.safetensors}"
epochs="${2:-3}"
py=tools/.venv-peer/bin/python
[ -x "$py" ] || tools/peer/setup.sh
cargo build --release -q
ser=target/release/ser
[ -f "$features" ] || $ser features --data ../shared/data/ravdess --out "$features" 2>&1 | grep -v XDG_RUNTIME_DIR
out=$(mktemp -d)
for spec in "cnn vectors" "mlp stats" "lstm frames" "cnn-lstm frames"; do
    set -- $spec
    extra=""
    [ "$1" = mlp ] && extra="--batch-norm"
    echo "== $1 on $2, $epochs epochs"
    # ser in f32 (the reference) and with bfloat16 GEMM operands (--precision bf16).
    # (For lstm and cnn-lstm, bf16 rounds the GEMMs around the recurrence; the recurrence is f32.)
    precisions="f32 bf16"
    for precision in $precisions; do
        $ser train --features "$features" --drop disgust --model "$1" --input "$2" $extra --epochs "$epochs" \
            --patience 100 --precision "$precision" --out "$out/m.safetensors" 2>&1 | grep -E "^epoch|saved" \
            | sed "s/^/ser-$precision   /"
    done
    $py tools/peer/keras_train.py --features "$features" --model "$1" --input "$2" --epochs "$epochs" 2>&1 \
        | grep -v -E "^(WARNING|I0000|E0000)" | sed 's/^/keras /'
done
rm -rf "$out"
