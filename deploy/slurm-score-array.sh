#!/usr/bin/env bash
# A sharded batch-scoring job on Slurm: an array of COUNT tasks, task i running
# `shopnet score --shard i/COUNT` over the same bundle and input. Each task writes its own
# part; together the parts hold every input row exactly once (rows are assigned by a
# stable hash of their id, not by position), and a task that is requeued rewrites the
# same part.
#
#   BUNDLE=bundles/sentiment_zh INPUT=reviews.csv OUT=scores sbatch deploy/slurm-score-array.sh
#   # afterwards, one file: head -1 scores/part-0.csv > all.csv; tail -q -n +2 scores/part-*.csv >> all.csv
#SBATCH --job-name=shopnet-score
#SBATCH --array=0-3
#SBATCH --cpus-per-task=4
#SBATCH --mem=8G
#SBATCH --time=02:00:00
#SBATCH --output=shopnet-score-%A_%a.log
set -euo pipefail

: "${BUNDLE:?set BUNDLE to an export bundle}"
: "${INPUT:?set INPUT to the file to score}"
: "${OUT:?set OUT to a folder for the parts}"
index="${SLURM_ARRAY_TASK_ID:?run under sbatch --array}"
count="${SLURM_ARRAY_TASK_COUNT:?run under sbatch --array}"

mkdir -p "$OUT"
exec shopnet score --run "$BUNDLE" --input "$INPUT" \
  --output "$OUT/part-$index.csv" --shard "$index/$count" \
  --device "${SHOPNET_DEVICE:-cpu}"
