# Sourced by tools/gpu/check.sh and tools/gpu/tables.sh (bash).
#
# find_gpu_driver SER [DEVICES_JSON]: when SER lists no GPU adapter (in DEVICES_JSON, its
# `devices --json` already written, when given) and VK_DRIVER_FILES is unset, points
# VK_DRIVER_FILES at the first vendor ICD json with which it does, and says so. Containers often
# keep that json outside the Vulkan loader's search path: session 8's loan saw the H200 in
# nvidia-smi and no adapter in `ser devices`. Candidates: $SER_ICD_CANDIDATES, else NVIDIA's
# usual places. Returns 1 when no GPU adapter is listed either way. It exports, so call it
# outside a pipeline (a pipeline's stage is a subshell).
lists_gpu() { # reads `ser devices --json` on stdin
    grep -Eq '"device_type": *"(DiscreteGpu|IntegratedGpu|VirtualGpu)"'
}
gpu_listed() {
    "$1" devices --json 2>/dev/null | lists_gpu
}
find_gpu_driver() {
    if [ -n "${2:-}" ]; then lists_gpu < "$2" && return 0; else gpu_listed "$1" && return 0; fi
    if [ -z "${VK_DRIVER_FILES:-}" ]; then
        local icd
        for icd in ${SER_ICD_CANDIDATES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json \
            /usr/share/vulkan/icd.d/nvidia_icd.json /etc/vulkan/icd.d/nvidia_icd.json}; do
            [ -f "$icd" ] || continue
            if VK_DRIVER_FILES="$icd" gpu_listed "$1"; then
                export VK_DRIVER_FILES="$icd"
                echo "no GPU adapter listed: with VK_DRIVER_FILES=$icd there is one"
                return 0
            fi
        done
    fi
    echo "no GPU adapter listed (VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}, known driver files tried)"
    return 1
}
