#!/usr/bin/env bash
# Prepares the carries of tools/gpu/tables.sh, members.sh and pitch.sh here (where Rust is): the
# release binary, the Vulkan loader and librosa's wheels (for pitch.sh: the machine's image has
# numpy, scipy, numba and scikit-learn, not librosa) in target/gpu-carry, and RAVDESS's actor
# folders split into parts target/gpu-data-1, -2, ... Then prints the calls, to be made back to
# back (a machine idle for 30 s goes back, and the parts with it).
#
#   tools/gpu/prepare_tables.sh [DATA (default ../shared/data/ravdess)]
#
# A device call carries at most 64 MiB, the working tree included, and the shipped models in
# weights/ alone are 41 MB: the calls need them out of the tree. `prepare_tables.sh` moves them
# to target/weights-aside (ignored) and says so; `tools/gpu/prepare_tables.sh --restore` puts
# them back (the binary carries the built-in model inside it). The parts are sized from what
# then travels: the first beside target/gpu-carry, each later one alone.
set -euo pipefail
cd "$(dirname "$0")/../.."
restore() {
    compgen -G "target/weights-aside/*.safetensors" > /dev/null || return 0
    mv target/weights-aside/*.safetensors weights/ && rmdir target/weights-aside
}
if [ "${1:-}" = "--restore" ]; then
    restore
    git status --short weights/
    exit 0
fi
data="${1:-../shared/data/ravdess}"
# A second preparation: the build reads the built-in model from weights/.
restore
cargo build --release --quiet
rm -rf target/gpu-carry target/gpu-data-*
mkdir -p target/gpu-carry target/weights-aside
cp target/release/ser target/gpu-carry/
cp -L "$(ldconfig -p | awk '/libvulkan.so.1 .*x86-64/ {print $NF; exit}')" target/gpu-carry/libvulkan.so.1
# The machine's Python is 3.12 (the device tool's KINDS.md).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d target/gpu-carry/wheels librosa==0.11.0 audioread decorator pooch platformdirs \
    soundfile==0.13.1 cffi pycparser soxr==0.5.0.post1 standard-aifc
if compgen -G "weights/*.safetensors" > /dev/null; then
    mv weights/*.safetensors target/weights-aside/
    echo "moved weights/*.safetensors to target/weights-aside for the calls; afterwards: $0 --restore"
fi
# What travels with every call: tracked files and untracked ones git does not ignore.
kib() { du -skL "$@" | awk '{s += $1} END {print s + 0}'; }
# (Tracked files moved aside are listed but absent: du skips them.)
tree_kib=$( (git ls-files -co --exclude-standard -z | xargs -0 du -skL 2>/dev/null || true) | awk '{s += $1} END {print s + 0}')
room=$((62 * 1024 - tree_kib)) # 2 MiB to spare under the 64
limit=$((room - $(kib target/gpu-carry)))
[ "$limit" -gt 4096 ] || { echo "the tree ($((tree_kib / 1024)) MB) and target/gpu-carry leave no room for data" >&2; exit 1; }
part=1 size=0
for actor in "$data"/Actor_*; do
    kb=$(kib "$actor")
    if [ $((size + kb)) -gt "$limit" ] && [ "$size" -gt 0 ]; then part=$((part + 1)) size=0 limit=$room; fi
    mkdir -p "target/gpu-data-$part"
    cp -rL "$actor" "target/gpu-data-$part/"
    size=$((size + kb))
done
echo "the tree travels with every call: $((tree_kib / 1024)) MB"
du -sh target/gpu-carry target/gpu-data-*
echo "Device calls, back to back (the first starts the machine, checks the adapter and times the"
echo "pitch blocks against librosa on part 1's clips; the last trains; its budget SECONDS: about"
echo "420 leaves a 600 s call room for the features and the ensembles):"
check="LD_LIBRARY_PATH=target/gpu-carry target/gpu-carry/ser selftest --quick"
pitch="tools/gpu/pitch.sh target/gpu-carry target/gpu-data-1 \$OUT/pitch"
train="tools/gpu/members.sh target/gpu-carry \$OUT SECONDS   (or tools/gpu/tables.sh for the study's tables)"
if [ "$part" -eq 1 ]; then
    echo "  1. carry [\"target/gpu-carry\", \"target/gpu-data-1\"]: $check && $pitch && $train"
else
    echo "  1. carry [\"target/gpu-carry\", \"target/gpu-data-1\"]: $check && $pitch"
    for ((p = 2; p < part; p++)); do
        echo "  $p. carry [\"target/gpu-data-$p\"]: ls target/gpu-data-*"
    done
    echo "  $part. carry [\"target/gpu-data-$part\"]: $train"
fi
echo "Then: $0 --restore (the shipped models back in weights/)"
