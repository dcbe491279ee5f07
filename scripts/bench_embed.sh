#!/usr/bin/env bash
# Embeddings at scale (README, Product images): embeds COUNT generated 32x32 images (an
# IDX file) with a trained image run, reporting wall time and peak memory, then answers
# QUERIES id queries against that index (exact cosine, top 10).
#
#   RUN=checkpoints/vgg_fashion-... scripts/bench_embed.sh     # 100,000 images, 1,000 queries
#   COUNT=2000 QUERIES=100 scripts/bench_embed.sh              # a quick smoke run
# Without RUN, a one-epoch run of configs/vgg_fashion.toml is trained first (the embedding
# cost does not depend on how well the net is trained).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT="${COUNT:-100000}"
QUERIES="${QUERIES:-1000}"
THREADS="${THREADS:-2}"
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
cargo build -q
BIN="${CARGO_TARGET_DIR:-target}/debug/shopnet"
export RAYON_NUM_THREADS="$THREADS"

if [[ -z "${RUN:-}" ]]; then
  RUN=$("$BIN" train --config configs/vgg_fashion.toml --set train.epochs=1 --out "$WORK/runs" 2>/dev/null | sed -n 's/^run \([^ ]*\) finished.*/\1/p')
fi
python3 scripts/make_images_idx.py --count "$COUNT" --out "$WORK/bench"
/usr/bin/time -f "embed: %e s wall, peak memory %M KiB" \
  "$BIN" embed --run "$RUN" --input "$WORK/bench-images-idx3-ubyte" --output "$WORK/index.safetensors"
seq 0 $((QUERIES - 1)) > "$WORK/queries.txt"
/usr/bin/time -f "similar: %e s wall (index load included), peak memory %M KiB" \
  "$BIN" similar --index "$WORK/index.safetensors" --queries "$WORK/queries.txt" --k 10 --output "$WORK/neighbours.csv"
echo "files in $WORK"
