#!/usr/bin/env bash
# One-call GPU check for a Linux machine with a GPU and Python with PyTorch (torchaudio optional)
# but no Rust toolchain: a prebuilt `ser` does `devices`, `selftest --all-adapters` and the three
# benchmarks on every adapter, PyTorch does the same work on the same GPU (tools/gpu/torch_peer.py),
# and tools/gpu/summarise.py writes the side-by-side table. Under 8 minutes on a real GPU: every
# step has its own time limit, and a step that fails or runs out is named in the summary while the
# others still run (the limits add up to 9 minutes, under a 10-minute call).
#
#   tools/gpu/check.sh [SER_BINARY (default: target/release/ser)] [OUT_DIR (default: gpu-check)]
#
# Exit status: 1 when `ser selftest` failed anywhere (the results are still written), else 0.
# On a loaned machine (the device tool): tools/gpu/prepare_tables.sh here first (the binary and
# the Vulkan loader in target/gpu-carry; it moves the shipped models out of the tree, which
# must travel in 64 MiB with the carry), then one call carrying ["target/gpu-carry"]:
# `tools/gpu/check.sh target/gpu-carry/ser $OUT`, then `tools/gpu/prepare_tables.sh --restore`.
# A libvulkan.so.1 beside the binary is used. Else no Vulkan loader on the machine? Unpack
# libvulkan1 first; if no driver is found, point
# VK_DRIVER_FILES at the vendor's ICD json (NVIDIA: /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
# on some hosts).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
ser="${1:-target/release/ser}"
out="${2:-gpu-check}"
python="${PYTHON:-python3}"
mkdir -p "$out"
[ -f "$(dirname "$ser")/libvulkan.so.1" ] && export LD_LIBRARY_PATH="$(cd "$(dirname "$ser")" && pwd)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
log="$out/check.log"
: > "$log"
: > "$out/steps.tsv"
status=0

step() { # step NAME SECONDS OUTFILE COMMAND...: runs one step with its limit, stdout to OUTFILE
    local name=$1 limit=$2 file=$3
    shift 3
    echo "== $name ($*)" | tee -a "$log"
    local start=$SECONDS
    timeout "$limit" "$@" > "$file" 2>> "$log"
    local rc=$?
    echo "   $name: exit $rc after $((SECONDS - start)) s" | tee -a "$log"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" >> "$out/steps.tsv"
    return $rc
}

"$ser" --version >> "$log" 2>&1 || { echo "check: $ser does not run" | tee -a "$log"; exit 2; }
step devices 30 "$out/devices.json" "$ser" devices --json
# A GPU the driver serves but the loader was not told of: tools/gpu/vulkan_env.sh.
. "$here/vulkan_env.sh"
before="${VK_DRIVER_FILES:-}"
find_gpu_driver "$ser" "$out/devices.json" > "$out/driver.txt"
tee -a "$log" < "$out/driver.txt"
[ "${VK_DRIVER_FILES:-}" != "$before" ] && step devices-icd 30 "$out/devices.json" "$ser" devices --json
"$ser" devices | tee -a "$log"
# Still no GPU adapter: the Vulkan loader's own account of the drivers it tried goes to
# devices-debug.log.
if ! lists_gpu < "$out/devices.json"; then
    VK_LOADER_DEBUG=all timeout 30 "$ser" devices > "$out/devices-debug.log" 2>&1
    echo "   no adapter: the loader's log is in $out/devices-debug.log" | tee -a "$log"
fi
step selftest 120 "$out/selftest.jsonl" "$ser" selftest --all-adapters --json || status=1
step gemm 90 "$out/gemm.jsonl" "$ser" bench gemm --all-adapters --json --repeats 5 --warmup 1 \
    --kernels auto,tex8,tex8-shared,vec4x8,tile32,tile64,tile64-r8,tile128 --precision f32,bf16,f16 \
    --sizes 128,256,512,1024,448x512x1280,928x256x640,1280x512x448
step features 50 "$out/features.jsonl" "$ser" bench features --all-adapters --json --repeats 3
step train 90 "$out/train.jsonl" "$ser" bench train --all-adapters --json --epochs 2 --precision f32,bf16
# The recurrent model (the workgroup-per-sequence kernel on GPUs) in the same table.
step train-lstm 45 "$out/train-lstm.jsonl" "$ser" bench train --all-adapters --json --model lstm --samples 512 --epochs 1
cat "$out/train-lstm.jsonl" >> "$out/train.jsonl"
# The sequence models' other two: the CNN+LSTM and the refined CNN over frames.
# (The steps' limits add up to under the device tool's 600 s a call.)
for model in cnn-lstm cnn-frames; do
    step "train-$model" 35 "$out/train-$model.jsonl" "$ser" bench train --all-adapters --json --model "$model" --samples 512 --epochs 1
    cat "$out/train-$model.jsonl" >> "$out/train.jsonl"
done
step torch 90 "$out/torch.jsonl" "$python" "$here/torch_peer.py" \
    --gemm-sizes 128,256,512,1024,448x512x1280,928x256x640,1280x512x448
"$python" "$here/summarise.py" "$out" | tee -a "$log"
exit $status
