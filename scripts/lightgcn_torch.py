#!/usr/bin/env python3
"""PyTorch reference for shopnet's LightGCN: the same model, loss, sampling and metrics.

    python3 scripts/lightgcn_torch.py --data lastfm --epochs 200            # Recall/NDCG@20
    python3 scripts/lightgcn_torch.py --data gowalla --time-epochs 1        # seconds per epoch

Model: one embedding table for users then items (normal, std 0.1), K = 3 propagations by
the sparse normalised adjacency D^-1/2 A D^-1/2, final embedding the mean of layers 0..K.
Loss: BPR (softplus(s_neg - s_pos)) over every training interaction per epoch with one
uniformly drawn negative, plus l2 / 2 * ||layer-0 embeddings of the batch||^2 / batch size.
Adam lr 0.001, batch 2048. Evaluation: full ranking of all items not in the user's
training set; Recall@20 and NDCG@20 (ideal DCG over min(20, |test items|)); the epoch
with the best test recall is reported, as shopnet's config does.
"""
import argparse
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def read(name):
    if name == "lastfm":
        def pairs(path):
            out = []
            for line in (DATA / "lastfm" / path).read_text().splitlines():
                if line.strip():
                    u, i = line.split()[:2]
                    out.append((int(u) - 1, int(i) - 1))
            return out
        return pairs("data1.txt"), pairs("test1.txt"), 1892, 4489
    def lists(path):
        out = []
        for line in (DATA / "gowalla" / path).read_text().splitlines():
            ids = [int(x) for x in line.split()]
            out += [(ids[0], i) for i in ids[1:]]
        return out
    train, test = lists("train.txt"), lists("test.txt")
    return train, test, max(u for u, _ in train + test) + 1, max(i for _, i in train + test) + 1


def adjacency(train, users, items):
    u = torch.tensor([p[0] for p in train])
    i = torch.tensor([p[1] for p in train]) + users
    rows, cols = torch.cat([u, i]), torch.cat([i, u])
    degree = torch.bincount(rows, minlength=users + items).float()
    values = 1.0 / torch.sqrt(degree[rows] * degree[cols])
    return torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (users + items,) * 2).coalesce()


def propagate(table, graph, layers):
    layer, total = table, table
    for _ in range(layers):
        layer = torch.sparse.mm(graph, layer)
        total = total + layer
    return total / (layers + 1)


def evaluate(table, graph, layers, users, train_sets, test_sets, k=20):
    with torch.no_grad():
        final = propagate(table, graph, layers)
        user_emb, item_emb = final[:users], final[users:]
        test_users = [u for u in range(users) if test_sets[u] and train_sets[u]]
        recall = ndcg = 0.0
        for start in range(0, len(test_users), 256):
            batch = test_users[start:start + 256]
            scores = user_emb[batch] @ item_emb.T
            for row, u in enumerate(batch):
                scores[row, list(train_sets[u])] = -math.inf
            top = torch.topk(scores, k, dim=1).indices.tolist()
            for row, u in enumerate(batch):
                relevant = test_sets[u]
                hits = [1.0 if item in relevant else 0.0 for item in top[row]]
                recall += sum(hits) / len(relevant)
                dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
                idcg = sum(1.0 / math.log2(r + 2) for r in range(min(k, len(relevant))))
                ndcg += dcg / idcg
        return recall / len(test_users), ndcg / len(test_users)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["lastfm", "gowalla"], default="lastfm")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--time-epochs", type=int, default=0, help="only time this many epochs")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2020)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train, test, users, items = read(args.data)
    train, test = sorted(set(train)), sorted(set(test))
    train_sets = [set() for _ in range(users)]
    test_sets = [set() for _ in range(users)]
    for u, i in train:
        train_sets[u].add(i)
    for u, i in test:
        test_sets[u].add(i)
    graph = adjacency(train, users, items)
    table = torch.nn.Parameter(torch.randn(users + items, 64) * 0.1)
    optimizer = torch.optim.Adam([table], lr=1e-3)
    layers, l2, batch_size = 3, 1e-4, 2048
    best = (0.0, 0.0, 0)
    epochs = args.time_epochs or args.epochs
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        pairs = train[:]
        rng.shuffle(pairs)
        triples = []
        for u, p in pairs:
            while True:
                n = rng.randrange(items)
                if n not in train_sets[u]:
                    break
            triples.append((u, p, n))
        for start in range(0, len(triples), batch_size):
            batch = torch.tensor(triples[start:start + batch_size])
            u, p, n = batch[:, 0], batch[:, 1] + users, batch[:, 2] + users
            final = propagate(table, graph, layers)
            pos = (final[u] * final[p]).sum(1)
            neg = (final[u] * final[n]).sum(1)
            reg = (table[u].pow(2).sum() + table[p].pow(2).sum() + table[n].pow(2).sum()) / (2 * len(batch))
            loss = F.softplus(neg - pos).mean() + l2 * reg
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - started
        if args.time_epochs:
            print(f"torch lightgcn {args.data} ({torch.get_num_threads()} threads): epoch {epoch} {seconds:.2f} s (batch {batch_size}, embedding 64, 3 layers)", flush=True)
            continue
        recall, ndcg = evaluate(table, graph, layers, users, train_sets, test_sets)
        if recall > best[0]:
            best = (recall, ndcg, epoch)
        print(f"epoch {epoch} {seconds:.2f}s recall@20 {recall:.4f} ndcg@20 {ndcg:.4f}", flush=True)
    if not args.time_epochs:
        print(f"torch lightgcn {args.data}: best recall@20 {best[0]:.4f} ndcg@20 {best[1]:.4f} at epoch {best[2]} of {epochs}")


if __name__ == "__main__":
    main()
