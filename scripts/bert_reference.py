#!/usr/bin/env python3
"""Reference outputs for the BERT parity tests (tests/bert_parity.rs), from PyTorch and
Hugging Face transformers.

1. all-MiniLM-L6-v2 (folder from scripts/install_minilm.sh): token ids and last hidden
   state of a few English and Chinese sentences -> tests/fixtures/bert/minilm_reference.json.
   To keep the fixture small it stores, per sentence, the full hidden row of the first and
   the last token and every 16th feature of every token.
2. A small random BertModel with another depth, width, head count, vocabulary and
   layer_norm_eps, saved with save_pretrained plus a WordPiece tokenizer.json trained on
   the sentences -> tests/fixtures/bert/tiny/, and its full last hidden state and pooler
   output -> tests/fixtures/bert/tiny_reference.json.

Usage: python3 scripts/bert_reference.py [MINILM_DIR]
"""

import json
import subprocess
import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, BertConfig, BertModel

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "bert"

SENTENCES = [
    "The delivery was fast and the shoes fit perfectly.",
    "Terrible quality, the zipper broke after two days!",
    "Would I buy it again? Probably not.",
    "Great value for money",
    "物流很快，质量也不错，五星好评。",
    "屏幕有划痕，客服态度很差。",
    "这本书值得一读",
]
STRIDE = 16


def rounded(values):
    return [round(float(v), 7) for v in values]


def minilm(model_dir: Path):
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BertModel.from_pretrained(model_dir, attn_implementation="eager").eval()
    sentences = []
    with torch.no_grad():
        for text in SENTENCES:
            # tokenizer.json pads to 128; the reference runs each sentence unpadded.
            ids = tokenizer(text, padding=False, truncation=True, max_length=128)["input_ids"]
            hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
            sentences.append({
                "text": text,
                "input_ids": ids,
                "first_row": rounded(hidden[0]),
                "last_row": rounded(hidden[-1]),
                "columns": [rounded(row[::STRIDE]) for row in hidden],
            })
    return {"model": "sentence-transformers/all-MiniLM-L6-v2", "column_stride": STRIDE, "sentences": sentences}


def tiny():
    torch.manual_seed(0)
    folder = OUT / "tiny"
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.train_from_iterator(SENTENCES, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tokenizer.save(str(folder / "tokenizer.json"))

    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=24,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=40,
        max_position_embeddings=40,
        type_vocab_size=1,
        layer_norm_eps=1e-6,
        hidden_act="gelu",
        initializer_range=0.2,
    )
    model = BertModel(config).eval()
    # Random LayerNorm parameters and biases, so that loading them is tested too.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                param.add_(0.1 * torch.randn_like(param))
    model.save_pretrained(folder, safe_serialization=True)
    rows = []
    with torch.no_grad():
        for text in SENTENCES:
            ids = tokenizer.encode(text).ids
            out = model(input_ids=torch.tensor([ids]))
            rows.append({
                "text": text,
                "input_ids": ids,
                "last_hidden_state": [rounded(r) for r in out.last_hidden_state[0]],
                "pooler_output": rounded(out.pooler_output[0]),
            })
    return {"hidden_size": config.hidden_size, "sentences": rows}


def main():
    if len(sys.argv) > 1:
        model_dir = Path(sys.argv[1])
    else:
        model_dir = Path(subprocess.check_output([str(ROOT / "scripts" / "install_minilm.sh")], text=True).strip())
    OUT.mkdir(parents=True, exist_ok=True)
    for name, data in [("minilm_reference.json", minilm(model_dir)), ("tiny_reference.json", tiny())]:
        (OUT / name).write_text(json.dumps(data, ensure_ascii=False) + "\n")
        print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
