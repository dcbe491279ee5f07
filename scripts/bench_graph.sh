#!/usr/bin/env bash
# Cora training-epoch benchmark: shopnet (burn-flex, and burn-ndarray when a binary built
# with `--features ndarray` is given) against the same nets in PyTorch + PyG, in the same
# run, on the same machine and thread count. Prints ms/epoch and the ratio shopnet / PyTorch.
#
#   scripts/bench_graph.sh                      # 2 threads, flex only
#   NDARRAY_BIN=/path/to/shopnet scripts/bench_graph.sh
#   THREADS=2 DEVICE=wgpu scripts/bench_graph.sh   # on a GPU
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
EPOCHS="${EPOCHS:-200}"
DEVICE="${DEVICE:-cpu}"
cargo build -q
BIN="${CARGO_TARGET_DIR:-target}/debug/shopnet"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

torch_out=$(python3 -W ignore scripts/bench_graph_torch.py --threads "$THREADS" --epochs "$EPOCHS")
echo "$torch_out"
for model in gcn gat; do
  torch_ms=$(echo "$torch_out" | grep "^torch $model " | sed -E 's/.*: ([0-9.]+) ms\/epoch mean.*/\1/')
  backends=("$DEVICE:$BIN")
  [[ -n "${NDARRAY_BIN:-}" ]] && backends+=("ndarray:$NDARRAY_BIN")
  for entry in "${backends[@]}"; do
    device="${entry%%:*}" bin="${entry#*:}"
    line=$("$bin" bench --model "$model" --device "$device" --threads "$THREADS" --epochs "$EPOCHS")
    echo "$line"
    ms=$(echo "$line" | sed -E 's/.*: ([0-9.]+) ms\/epoch mean.*/\1/')
    awk -v m="$model" -v d="$device" -v s="$ms" -v t="$torch_ms" 'BEGIN { printf "ratio %s %s: shopnet/pytorch = %.2f\n", m, d, s / t }'
  done
done
