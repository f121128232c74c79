#!/usr/bin/env bash
# Feature extraction, ser against librosa, side by side in one run at identical settings.
#   tools/bench/features.sh [DATA_DIR]      (default ../shared/data/ravdess)
# Needs tools/golden/setup.sh (the pinned librosa venv) and a release build of ser.
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${1:-../shared/data/ravdess}"
py=tools/.venv/bin/python
ser=target/release/ser
[ -x "$py" ] || tools/golden/setup.sh
cargo build --release -q
out=$(mktemp -d)
# ser's defaults (tuning 0) and librosa's defaults (tuning estimated per clip), both at 16 kHz.
for setting in "ser 1024 256 64 0" "librosa 2048 512 128 estimate"; do
    set -- $setting
    echo "== $1 settings: n_fft $2, hop $3, $4 mels, tuning $5, 16 kHz"
    $ser features --data "$data" --out "$out/f.safetensors" --no-cache --profile \
        --n-fft "$2" --hop "$3" --n-mels "$4" --tuning "$5" 2>&1 | grep -v XDG_RUNTIME_DIR
    $py tools/bench/librosa_features.py --data "$data" --sr 16000 --n-fft "$2" --hop "$3" --n-mels "$4" --tuning "$5"
done
rm -rf "$out"
