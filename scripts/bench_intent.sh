#!/usr/bin/env bash
# Purchase-intent benchmark (the reference `cnn_lstm` workload): shopnet against
# scripts/intent_torch.py in the same run, on the same machine and thread count; then
# scoring a generated log of USERS users (default 1,000,000) with its wall time and peak
# memory. Needs `pip install torch`.
#
#   scripts/bench_intent.sh                  # THREADS=2, USERS=1000000
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
USERS="${USERS:-1000000}"
cargo build -q
BIN="${CARGO_TARGET_DIR:-target}/debug/shopnet"
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

ours=$("$BIN" bench --model intent --threads "$THREADS" | tail -1)
theirs=$(python3 -W ignore scripts/intent_torch.py --threads "$THREADS" | tail -1)
echo "$ours"
echo "$theirs"
field() { echo "$1" | sed -E "s/.*$2 ([0-9.]+) s.*/\1/"; }
awk -v a="$(field "$ours" "train epoch")" -v b="$(field "$theirs" "train epoch")" -v c="$(field "$ours" inference)" -v d="$(field "$theirs" inference)" \
  'BEGIN { printf "ratio shopnet/pytorch: training %.2f, inference %.2f\n", a / b, c / d }'

# Scoring at scale: a model trained briefly on a small generated log scores a large one.
"$BIN" synth events --users 20000 --seed 1 --out "$out/train.csv" > /dev/null
"$BIN" train --config configs/intent_synth.toml --set data.events="$out/train.csv" --set train.epochs=1 \
  --set runtime.threads="$THREADS" --out "$out/runs" > "$out/train.log" 2>&1
run=$(grep '^run ' "$out/train.log" | awk '{ print $2 }')
"$BIN" synth events --users "$USERS" --seed 2 --out "$out/score.csv" > /dev/null
/usr/bin/time -v "$BIN" score --run "$run" --input "$out/score.csv" --output "$out/scores.csv" 2> "$out/time.log" > /dev/null
echo "score $USERS users ($(du -h "$out/score.csv" | cut -f1) log, $THREADS threads): $(($(wc -l < "$out/scores.csv") - 1)) rows, wall $(grep 'Elapsed (wall' "$out/time.log" | awk '{ print $NF }'), peak memory $(grep 'Maximum resident' "$out/time.log" | awk '{ printf "%.0f MiB", $NF / 1024 }')"
