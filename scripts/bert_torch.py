#!/usr/bin/env python3
"""The BERT benchmark workload in PyTorch + transformers, for the shopnet / PyTorch ratio
(scripts/bench_bert.sh): inference over SENTENCES random sequences of LENGTH tokens in
batches of BATCH, then STEPS fine-tuning steps ([CLS] -> dropout -> linear head,
cross-entropy, AdamW lr 2e-5) at batch TRAIN_BATCH. One untimed batch of each first.

Usage: python3 scripts/bert_torch.py MODEL_DIR [--threads 2] [--sentences 1024] ...
"""

import argparse
import time

import torch
from transformers import BertModel


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sentences", type=int, default=1024)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--train-batch", type=int, default=16)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    bert = BertModel.from_pretrained(args.model).eval()
    vocab = bert.config.vocab_size
    data = torch.randint(1000, vocab, (args.sentences, args.length))
    with torch.no_grad():
        bert(input_ids=data[: args.batch])
        started = time.perf_counter()
        for rows in data.split(args.batch):
            bert(input_ids=rows).last_hidden_state
        inference = time.perf_counter() - started

    bert = BertModel.from_pretrained(args.model).train()
    head = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(bert.config.hidden_size, 2))
    params = list(bert.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=2e-5, weight_decay=0.01)

    def step():
        ids = torch.randint(1000, vocab, (args.train_batch, args.length))
        labels = torch.randint(0, 2, (args.train_batch,))
        logits = head(bert(input_ids=ids).last_hidden_state[:, 0])
        loss = torch.nn.functional.cross_entropy(logits, labels)
        loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    finetune = time.perf_counter() - started
    print(f"torch bert inference ({args.threads} threads): {args.sentences} sentences x {args.length} tokens, batch {args.batch}: {inference:.3f} s")
    print(f"torch bert finetune ({args.threads} threads): {args.steps} steps, batch {args.train_batch} x {args.length} tokens: {finetune:.3f} s")


if __name__ == "__main__":
    main()
