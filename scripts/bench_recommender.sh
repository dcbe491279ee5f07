#!/usr/bin/env bash
# Gowalla benchmark for the LightGCN recommender, shopnet against scripts/lightgcn_torch.py
# in the same run, on the same machine and thread count: seconds per training epoch
# (batch 2048, embedding 64, 3 layers), then `shopnet recommend` for every user with its
# wall time and peak memory. Needs ../shared/data/gowalla beside the repository.
#
#   scripts/bench_recommender.sh            # THREADS=2 by default
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
cargo build -q
BIN="${CARGO_TARGET_DIR:-target}/debug/shopnet"
export RAYON_NUM_THREADS="$THREADS"
out=$(mktemp -d)

"$BIN" train --config configs/lightgcn_gowalla.toml --set train.epochs=1 --set runtime.threads="$THREADS" --out "$out" > "$out/train.log" 2>&1
run=$(grep '^run ' "$out/train.log" | awk '{ print $2 }')
ours=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "train_seconds") c = i } NR == 2 { print $c }' "$run/metrics.csv")
echo "shopnet lightgcn gowalla ($THREADS threads): epoch 1 ${ours} s (batch 2048, embedding 64, 3 layers)"
torch_line=$(python3 -W ignore scripts/lightgcn_torch.py --data gowalla --time-epochs 1 --threads "$THREADS" | tail -1)
echo "$torch_line"
theirs=$(echo "$torch_line" | sed -E 's/.*epoch 1 ([0-9.]+) s.*/\1/')
awk -v s="$ours" -v t="$theirs" 'BEGIN { printf "ratio lightgcn gowalla epoch: shopnet/pytorch = %.2f\n", s / t }'

/usr/bin/time -v "$BIN" recommend --run "$run" --users all --k 20 --output "$out/recs.csv" 2> "$out/time.log"
echo "recommend all users: $(grep -c . "$out/recs.csv") lines, wall $(grep 'Elapsed (wall' "$out/time.log" | awk '{ print $NF }'), peak memory $(grep 'Maximum resident' "$out/time.log" | awk '{ printf "%.0f MiB", $NF / 1024 }')"
rm -rf "$out"
