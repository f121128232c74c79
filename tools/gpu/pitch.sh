#!/usr/bin/env bash
# Issue 37's speed on a loaned GPU: ser's pitch blocks against librosa's pyin and yin, side by
# side on the same clips (tools/bench/pitch.sh: ser with and without the pitch blocks, librosa
# on every core). The machine has no Rust and no librosa: CARRY holds `ser` and
# libvulkan.so.1 and, under wheels/, the wheels tools/gpu/prepare_tables.sh downloaded (librosa and
# what the machine's image lacks of its needs). In a call that carries them and a folder of
# clips:
#
#   tools/gpu/pitch.sh CARRY DATA OUT
set -uo pipefail
cd "$(dirname "$0")/../.."
carry="$1"; data="$2"; out="$3"
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$carry"/wheels/*.whl || exit 1
export PYTHONPATH=/tmp/site LD_LIBRARY_PATH="$carry${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
. tools/gpu/vulkan_env.sh
find_gpu_driver "$carry/ser" > "$out/driver.txt"  # not in a pipeline: it exports
cat "$out/driver.txt"
"$carry/ser" devices | tee "$out/devices.txt"
echo "$(find -L "$data" -name '*.flac' | wc -l) clips, $(nproc) cores" | tee "$out/pitch.txt"
SER_BIN="$carry/ser" PYTHON=python3 tools/bench/pitch.sh "$data" 2>&1 | tee -a "$out/pitch.txt"
