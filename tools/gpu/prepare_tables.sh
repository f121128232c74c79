#!/usr/bin/env bash
# Prepares the carries of tools/gpu/tables.sh, members.sh and pitch.sh here (where Rust is): the
# release binary, the Vulkan loader and librosa's wheels (for pitch.sh: the machine's image has
# numpy, scipy, numba and scikit-learn, not librosa) in target/gpu-carry, and RAVDESS's actor
# folders split into parts target/gpu-data-1, -2, ... of at most PART_MB each, so that every
# device call stays under the 64 MiB it may carry (the tracked tree travels too: about 9 MB).
# Then prints the calls, to be made back to back (a machine idle for 30 s goes back, and the
# parts with it).
#
#   tools/gpu/prepare_tables.sh [DATA (default ../shared/data/ravdess)] [PART_MB (default 36)]
set -euo pipefail
cd "$(dirname "$0")/../.."
data="${1:-../shared/data/ravdess}"; part_mb="${2:-36}"
cargo build --release --quiet
rm -rf target/gpu-carry target/gpu-data-*
mkdir -p target/gpu-carry
cp target/release/ser target/gpu-carry/
cp -L "$(ldconfig -p | awk '/libvulkan.so.1 .*x86-64/ {print $NF; exit}')" target/gpu-carry/libvulkan.so.1
# The machine's Python is 3.12 (the device tool's KINDS.md).
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d target/gpu-carry/wheels librosa==0.11.0 audioread decorator pooch platformdirs \
    soundfile==0.13.1 cffi pycparser soxr==0.5.0.post1 standard-aifc
part=1 size=0
for actor in "$data"/Actor_*; do
    kb=$(du -skL "$actor" | cut -f1)
    if [ $((size + kb)) -gt $((part_mb * 1024)) ] && [ "$size" -gt 0 ]; then part=$((part + 1)) size=0; fi
    mkdir -p "target/gpu-data-$part"
    cp -rL "$actor" "target/gpu-data-$part/"
    size=$((size + kb))
done
du -sh target/gpu-carry target/gpu-data-*
echo "Device calls, back to back (the first starts the machine, checks the adapter and times the"
echo "pitch blocks against librosa on part 1's clips; the last trains; its budget SECONDS: about"
echo "420 leaves a 600 s call room for the features and the ensembles):"
check="LD_LIBRARY_PATH=target/gpu-carry target/gpu-carry/ser selftest --quick"
pitch="tools/gpu/pitch.sh target/gpu-carry target/gpu-data-1 \$OUT/pitch"
train="tools/gpu/members.sh target/gpu-carry \$OUT SECONDS   (or tools/gpu/tables.sh for the study's tables)"
if [ "$part" -eq 1 ]; then
    echo "  1. carry [\"target/gpu-carry\", \"target/gpu-data-1\"]: $check && $pitch && $train"
    exit 0
fi
echo "  1. carry [\"target/gpu-carry\", \"target/gpu-data-1\"]: $check && $pitch"
for ((p = 2; p < part; p++)); do
    echo "  $p. carry [\"target/gpu-data-$p\"]: ls target/gpu-data-*"
done
echo "  $part. carry [\"target/gpu-data-$part\"]: $train"
