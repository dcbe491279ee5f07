#!/usr/bin/env bash
# BERT benchmark (reference workload `bert`): all-MiniLM-L6-v2, inference over 1,024
# sentences of 128 tokens at batch 32, then 50 fine-tuning steps at batch 16; shopnet
# (burn-flex) against scripts/bert_torch.py in the same run, same thread count.
# Prints both timings and the ratio shopnet / PyTorch (above 1: shopnet is slower).
#
#   scripts/bench_bert.sh                              # 2 threads
#   SENTENCES=64 STEPS=2 scripts/bench_bert.sh         # smoke test
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-2}"
SENTENCES="${SENTENCES:-1024}"
STEPS="${STEPS:-50}"
DEVICE="${DEVICE:-cpu}"
MODEL="${SHOPNET_MINILM_DIR:-$(scripts/install_minilm.sh)}"
cargo build -q
BIN="${CARGO_TARGET_DIR:-target}/debug/shopnet"
export RAYON_NUM_THREADS="$THREADS" OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
args=(--sentences "$SENTENCES" --steps "$STEPS")

torch_out=$(python3 -W ignore scripts/bert_torch.py "$MODEL" --threads "$THREADS" "${args[@]}")
echo "$torch_out"
ours=$("$BIN" bench --model bert --weights "$MODEL" --device "$DEVICE" --threads "$THREADS" "${args[@]}")
echo "$ours"
for phase in inference finetune; do
  t=$(echo "$torch_out" | grep "^torch bert $phase" | sed -E 's/.*: ([0-9.]+) s$/\1/')
  s=$(echo "$ours" | grep "^shopnet bert $phase" | sed -E 's/.*: ([0-9.]+) s$/\1/')
  awk -v p="$phase" -v s="$s" -v t="$t" 'BEGIN { printf "ratio bert %s: shopnet/pytorch = %.2f\n", p, s / t }'
done
