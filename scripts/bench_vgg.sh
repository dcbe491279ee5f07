#!/usr/bin/env bash
# The reference image workload (README, Product images): one training epoch over 2,048
# generated 3x32x32 images at batch 64, then inference over them at batch 256, for shopnet
# (`shopnet bench --model vgg`) and the same net in PyTorch (scripts/vgg_torch.py), in the same
# run and thread count. Prints both lines and the ratios shopnet / PyTorch.
#
#   scripts/bench_vgg.sh                    # 2 threads
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
DEVICE="${DEVICE:-cpu}"
cargo build -q
BIN="${CARGO_TARGET_DIR:-target}/debug/shopnet"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"

torch_line=$(python3 -W ignore scripts/vgg_torch.py --threads "$THREADS" --images 2048)
shopnet_line=$("$BIN" bench --model vgg --device "$DEVICE" --threads "$THREADS")
echo "$torch_line"
echo "$shopnet_line"
field() { echo "$1" | sed -E "s/.*$2 ([0-9.]+) s.*/\1/"; }
awk -v st="$(field "$shopnet_line" 'train epoch')" -v tt="$(field "$torch_line" 'train epoch')" \
    -v si="$(field "$shopnet_line" 'inference')" -v ti="$(field "$torch_line" 'inference')" \
    'BEGIN { printf "ratio vgg train: shopnet/pytorch = %.2f\nratio vgg inference: shopnet/pytorch = %.2f\n", st / tt, si / ti }'
