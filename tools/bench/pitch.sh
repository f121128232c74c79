#!/usr/bin/env bash
# Pitch features (yin, pyin's f0 and voiced probability), ser against librosa, side by side on the same
# clips, both on every core: ser's whole feature run with the pitch blocks (decode, STFT and the
# default features included), then the same run without them (what the pitch blocks add is the
# difference), against librosa.pyin plus librosa.yin alone.
#   tools/bench/pitch.sh DATA_DIR
# Needs tools/golden/setup.sh (the pinned librosa venv) and a release build of ser, which it
# makes. Where there is no Rust (a loaned GPU machine, tools/gpu/pitch.sh): SER_BIN names a
# prebuilt ser and PYTHON a Python that imports librosa.
set -euo pipefail
cd "$(dirname "$0")/../.."
data="$1"
ser="${SER_BIN:-target/release/ser}"
py="${PYTHON:-tools/.venv/bin/python}"
if [ -z "${PYTHON:-}" ]; then [ -x "$py" ] || tools/golden/setup.sh; fi
[ -n "${SER_BIN:-}" ] || cargo build --release -q
out=$(mktemp -d)
for set in mfcc,chroma,contrast,yin,f0,voiced_prob mfcc,chroma,contrast; do
    echo "ser --set $set:"
    "$ser" features --data "$data" --out "$out/f.safetensors" --no-cache --set "$set" 2>&1 | grep -E "clips/s"
done
$py tools/bench/librosa_pitch.py --data "$data" --workers "$(nproc)"
rm -rf "$out"
