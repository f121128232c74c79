#!/bin/bash
# Predicts an archive as a Slurm array job: each task takes its shard of the sorted file list
# (ser reads SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT itself) and writes its own output,
# resumable: requeue a failed or preempted task and it continues where it stopped.
#
#   find /archive -name '*.wav' -o -name '*.flac' > files.txt
#   sbatch --array=0-15 docs/deploy/slurm-array.sh files.txt results
#   # when every task is done, in shard order:
#   cat results/shard-{0..15}.jsonl > results.jsonl
#
#SBATCH --job-name=ser-predict
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=4G
#SBATCH --time=04:00:00
#SBATCH --requeue
set -euo pipefail
list="$1"
outdir="$2"
mkdir -p "$outdir"
# Any Vulkan GPU the node has; without one, Mesa's lavapipe runs the same kernels on the CPU.
exec ser predict --files-from "$list" --out "$outdir/shard-${SLURM_ARRAY_TASK_ID}.jsonl" --progress
