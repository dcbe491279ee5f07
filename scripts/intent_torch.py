#!/usr/bin/env python3
"""PyTorch reference of shopnet's purchase-intent net (reference-models.md, section 1),
timed on the reference `cnn_lstm` workload the way `shopnet bench --model intent` times it:
one training epoch over 20,000 random sequences of length 50 (batch 32, Adam lr 1e-3,
BCE with logits, loss read back every step), then inference over the same at batch 256.

    python3 scripts/intent_torch.py --threads 2

The module names match shopnet's tensor names (`embedding.weight`, `conv.weight`,
`lstm.weight_ih_l0`, `head.weight`, ...), so `torch.save(net.state_dict())` maps onto
the Burn net key for key.
"""
import argparse
import time

import torch
import torch.nn.functional as F


class IntentNet(torch.nn.Module):
    def __init__(self, vocab=10_000, embedding=50, channels=64, kernel=3, pool=2, hidden=100, dropout=0.2):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, embedding, padding_idx=0)
        self.conv = torch.nn.Conv1d(embedding, channels, kernel, padding=kernel // 2)
        self.pool = pool
        self.lstm = torch.nn.LSTM(channels, hidden, num_layers=1, batch_first=True)
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(hidden, 1)

    def forward(self, tokens):
        x = self.embedding(tokens).transpose(1, 2)
        x = F.max_pool1d(F.relu(self.conv(x)), self.pool).transpose(1, 2)
        _, (h, _) = self.lstm(x)
        return self.head(self.dropout(h[-1])).squeeze(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sequences", type=int, default=20_000)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab, length = 10_000, 50
    tokens = torch.randint(2, vocab, (args.sequences, length))
    labels = (torch.rand(args.sequences) < 0.2).float()
    net = IntentNet(vocab)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)

    net.train()
    started = time.perf_counter()
    order = torch.randperm(args.sequences)
    steps = 0
    for batch in order.split(32):
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(net(tokens[batch]), labels[batch])
        loss.backward()
        optimizer.step()
        loss.item()
        steps += 1
    train_s = time.perf_counter() - started

    net.eval()
    started = time.perf_counter()
    with torch.no_grad():
        for batch in torch.arange(args.sequences).split(256):
            torch.sigmoid(net(tokens[batch])).numpy()
    inference_s = time.perf_counter() - started
    print(f"pytorch {torch.__version__} intent {args.sequences} sequences of {length} ({args.threads} threads): "
          f"train epoch {train_s:.2f} s ({steps} steps of 32), inference {inference_s:.2f} s (batch 256)")


if __name__ == "__main__":
    main()
