#!/usr/bin/env bash
# The sequence models' accuracy tables (tools/bench/sequence_tables.sh) on a loaned GPU machine,
# several runs at once, within a time budget. The machine has no Rust and a call carries at
# most 64 MiB, so RAVDESS (117 MB of FLAC) travels in parts over consecutive calls while the
# machine stays warm (tools/gpu/prepare_tables.sh makes the parts and prints the calls); files
# carried by an earlier call stay there. In the last call:
#
#   tools/gpu/tables.sh CARRY OUT [SECONDS] [JOBS]
#
# CARRY: the folder with `ser` and libvulkan.so.1; OUT: where the summary and the logs (one
# archive, logs.tar.gz: a call brings back at most 8 files) go ($OUT of the device call);
# SECONDS: when to stop starting and finishing runs (default 420); JOBS: runs at once (default 8). The features are built once from target/gpu-data-*/ and
# kept, as are the logs (target/gpu-seqtab) and models (target/gpu-models), so a further call
# on the same warm machine resumes where this one stopped: a run cut by the budget continues
# from its last best epoch (sequence_tables.sh passes --resume with its saved model).
# Environment: SER_GPU_SET (the feature set, `ser features --set`; default ser's three),
# SER_GPU_MODELS (default "cnn-lstm lstm cnn"), SER_TABLE_ONLY (which runs, as for
# sequence_tables.sh). tools/gpu/members.sh sets them for the ensembles by actor.
set -uo pipefail
cd "$(dirname "$0")/../.."
carry="$1"; out="$2"; budget="${3:-420}"; parallel="${4:-8}"
export LD_LIBRARY_PATH="$carry${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ser="$carry/ser"
mkdir -p "$out" target/gpu-seqtab target/gpu-models
. tools/gpu/vulkan_env.sh
# Not in a pipeline: it exports VK_DRIVER_FILES for the runs below.
find_gpu_driver "$ser" > "$out/driver.txt"
cat "$out/driver.txt"
"$ser" devices | tee "$out/devices.txt"
set_args=() features=target/gpu-features.safetensors
if [ -n "${SER_GPU_SET:-}" ]; then
    set_args=(--set "$SER_GPU_SET")
    features="target/gpu-features-$(printf %s "$SER_GPU_SET" | cksum | cut -d' ' -f1).safetensors"
fi
if [ ! -f "$features" ]; then
    # Every carried part in one folder (the actors' folders side by side).
    rm -rf target/gpu-data && mkdir -p target/gpu-data
    for actor in target/gpu-data-*/Actor_*; do ln -s "$PWD/$actor" target/gpu-data/; done
    echo "$(ls target/gpu-data | wc -l) actors carried" | tee -a "$out/features.log"
    "$ser" features --data target/gpu-data "${set_args[@]}" --out "$features" 2>&1 | tee -a "$out/features.log" || exit 1
fi
SER_BIN="$ser" SER_TABLE_JOBS="$parallel" SER_TABLE_MODELS=target/gpu-models \
    timeout --signal=TERM "$budget" tools/bench/sequence_tables.sh "$features" target/gpu-seqtab "${SER_GPU_MODELS:-cnn-lstm lstm cnn}"
echo "tables: exit $? after the budget of $budget s or the last run" | tee "$out/tables.txt"
tar -czf "$out/logs.tar.gz" -C target/gpu-seqtab .
python3 tools/bench/sequence_tables_summary.py target/gpu-seqtab | tee "$out/summary.md"
echo "$features" > target/gpu-features.path
