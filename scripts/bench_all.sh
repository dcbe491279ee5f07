#!/usr/bin/env bash
# Every reference workload (../shared/reference-models.md), shopnet (`shopnet bench`) and the
# matching ../shared/anchors/ script (the strongest plain-PyTorch version) in the same run,
# 2 threads each, then one table: workload, phase, shopnet, PyTorch, shopnet / PyTorch (time
# ratio: under 1.0, shopnet is faster) and shopnet's peak memory where its bench reports it.
#
#   PYTHON=VENV/bin/python scripts/bench_all.sh     # VENV as in ../shared/anchors/README.md
#
# The LightGCN Gowalla epoch (about 25 minutes) is scripts/bench_recommender.sh, kept apart.
# The BERT rows need all-MiniLM-L6-v2 (scripts/install_minilm.sh, or SHOPNET_MINILM_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
THREADS=2
cargo build -q
BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/shopnet"
MINILM="${SHOPNET_MINILM_DIR:-$(scripts/install_minilm.sh)}"
ANCHORS="$(realpath ../shared/anchors)"
export RAYON_NUM_THREADS=$THREADS OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

ours() { # NAME ARGS...: shopnet bench, its output kept as $out/NAME
  local name=$1; shift
  if ! "$BIN" bench --threads $THREADS "$@" > "$out/$name" 2> "$out/$name.err"; then
    echo "bench_all: shopnet bench $* failed:" >&2
    tail -n 5 "$out/$name.err" >&2
    exit 1
  fi
}
theirs() { # SCRIPT ARGS...: an anchor script, in its folder (it writes results/*.json there)
  if ! (cd "$ANCHORS" && "$PYTHON" -W ignore "$@" > "$out/$1.log" 2>&1); then
    echo "bench_all: ../shared/anchors/$1 failed (setup: ../shared/anchors/README.md); its last lines:" >&2
    tail -n 5 "$out/$1.log" >&2
    exit 1
  fi
}

ours gcn --model gcn
ours gat --model gat
theirs gcn_cora.py --seeds 1 --dense-seeds 0
theirs gat_cora.py --seeds 1 --dense-seeds 0
ours intent --model intent
ours intent_composed --model intent --composed-ops
theirs cnn_lstm.py --epochs 1 --infer-reps 1
ours vgg --model vgg
theirs vgg.py --epochs 1 --infer-reps 1
ours bert --model bert --weights "$MINILM"
theirs bert.py --ft-reps 1 --infer-reps 1

"$PYTHON" - "$out" "$ANCHORS/results" << 'PY'
import json, re, sys
out, results = sys.argv[1:]
text = lambda name: open(f"{out}/{name}").read()
def num(pattern, name):
    m = re.search(pattern, text(name))
    return float(m.group(1)) if m else None
peak = lambda name: (re.search(r"peak memory (\d+ [MG]iB)", text(name)) or [None, ""])[1]
res = lambda name: json.load(open(f"{results}/{name}.json"))
rows = []
gcn, gat = res("gcn_cora")["variants"]["nnz_dropout"], res("gat_cora")["variants"]["nnz_dropout"]
rows.append(("GCN Cora", "training epoch", num(r"([\d.]+) ms/epoch mean", "gcn") / 1e3, gcn["epoch_ms_median"] / 1e3, "s", peak("gcn")))
rows.append(("GAT Cora", "training epoch", num(r"([\d.]+) ms/epoch mean", "gat") / 1e3, gat["epoch_ms_median"] / 1e3, "s", peak("gat")))
lstm = res("cnn_lstm")
rows.append(("CNN+LSTM", "training epoch", num(r"train epoch ([\d.]+) s", "intent"), lstm["train"]["epoch_s_median"], "s", peak("intent")))
rows.append(("CNN+LSTM", "inference", num(r"inference ([\d.]+) s", "intent"), lstm["inference"]["pass_s_median"], "s", ""))
# The same workload with runtime.fused_ops = false: what shopnet's fused kernels buy.
rows.append(("CNN+LSTM, composed ops", "training epoch", num(r"train epoch ([\d.]+) s", "intent_composed"), lstm["train"]["epoch_s_median"], "s", peak("intent_composed")))
rows.append(("CNN+LSTM, composed ops", "inference", num(r"inference ([\d.]+) s", "intent_composed"), lstm["inference"]["pass_s_median"], "s", ""))
vgg = res("vgg")
rows.append(("VGG", "training epoch", num(r"train epoch ([\d.]+) s", "vgg"), vgg["train"]["epoch_s_median"], "s", peak("vgg")))
rows.append(("VGG", "inference", num(r"inference ([\d.]+) s", "vgg"), vgg["inference"]["pass_s_median"], "s", ""))
bert = res("bert")
sentences = num(r"(\d+) sentences x", "bert")
steps = num(r"(\d+) steps, batch", "bert")
rows.append(("MiniLM", "inference, per sentence", num(r"batch 32: ([\d.]+) s", "bert") / sentences, 1 / bert["inference"]["sdpa"]["sentences_per_s"], "s", ""))
rows.append(("MiniLM", "fine-tuning, per step", num(r"tokens: ([\d.]+) s", "bert") / steps, 1 / bert["finetune"]["steps_per_s_median"], "s", peak("bert")))
print("| workload | phase | shopnet | PyTorch | shopnet / PyTorch | shopnet peak memory |")
print("| --- | --- | --- | --- | --- | --- |")
for workload, phase, ours, theirs, unit, memory in rows:
    print(f"| {workload} | {phase} | {ours:.4g} {unit} | {theirs:.4g} {unit} | **{ours / theirs:.2f}** | {memory} |")
PY
