#!/usr/bin/env bash
# On a loaned GPU: does a sequence model lift the speaker-normalised pair by actor (krr + svm on
# the distribution-voicing input, 0.783 on lavapipe) further? In
# the last of tools/gpu/prepare_tables.sh's calls (RAVDESS carried in parts):
#
#   tools/gpu/members.sh CARRY OUT [SECONDS] [JOBS]
#
# builds the 65-column prosody set, trains the three sequence models on frames (30 epochs;
# tools/gpu/tables.sh, at most SECONDS for them, default 360, JOBS at once, default 8) and
# kernel ridge and the SVM on the distribution-voicing input, all with --speaker-norm on the 5
# folds by actor, then scores their ensembles fold by fold (tools/bench/fold_ensembles.sh) into
# OUT/ensembles.md. A run the budget cut is scored at its best epoch so far (OUT/summary.md
# names the runs that finished); a further call on the warm machine resumes it and scores
# again; models already trained are kept (target/gpu-models).
set -uo pipefail
cd "$(dirname "$0")/../.."
carry="$1"; out="$2"; budget="${3:-360}"; parallel="${4:-8}"
export SER_GPU_SET=mfcc,chroma,contrast,rms,zcr,voiced_prob,delta_rms,f0,voiced
export SER_GPU_MODELS="cnn-lstm cnn lstm" SER_TABLE_ONLY='(cnn-lstm|cnn|lstm)-norm-fold'
tools/gpu/tables.sh "$carry" "$out" "$budget" "$parallel" || exit 1
export LD_LIBRARY_PATH="$carry${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ser="$carry/ser"
. tools/gpu/vulkan_env.sh
find_gpu_driver "$ser" > /dev/null
features="$(cat target/gpu-features.path)"
models=target/gpu-models
for model in krr svm; do
    [ -f "$models/$model-voi-norm.safetensors.fold4" ] && continue
    "$ser" train --features "$features" --drop disgust --model "$model" --input distribution-voicing \
        --split actor-folds --folds 5 --speaker-norm --out "$models/$model-voi-norm.safetensors" \
        > "$out/$model.log" 2>&1 || echo "$model: ser train failed (OUT/$model.log)"
done
krr="$models/krr-voi-norm.safetensors" svm="$models/svm-voi-norm.safetensors"
sequence_model() { echo "$models/$1-norm-fold.safetensors"; }
{
    echo "# Ensembles by actor, --speaker-norm, $SER_GPU_SET"
    for combo in "$krr" "$krr $svm" "$krr $svm $(sequence_model cnn-lstm)" "$krr $svm $(sequence_model cnn)" "$krr $svm $(sequence_model lstm)" \
        "$krr $svm $(sequence_model cnn-lstm) $(sequence_model cnn)" "$krr $svm $(sequence_model cnn-lstm) $(sequence_model lstm)" \
        "$krr $svm $(sequence_model cnn-lstm) $(sequence_model cnn) $(sequence_model lstm)" "$(sequence_model cnn-lstm)" "$(sequence_model cnn)" "$(sequence_model lstm)"; do
        echo
        echo "## $(for m in $combo; do basename "$m" .safetensors; done | tr '\n' ' ')"
        # shellcheck disable=SC2086 # the combination's words are the prefixes
        SER_BIN="$ser" tools/bench/fold_ensembles.sh "$features" $combo 2>&1
    done
} | tee "$out/ensembles.md"
