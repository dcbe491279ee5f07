#!/usr/bin/env python3
"""PyTorch + PyG reference for shopnet's Cora benchmark: the same GCN and GAT, timed the
same way (forward, backward, Adam step, loss read back), on the same data.

    python3 scripts/bench_graph_torch.py --threads 2                 # ms per training epoch
    python3 scripts/bench_graph_torch.py --threads 2 --accuracy 10   # also test accuracy over 10 seeds

The nets are the PyG examples' (`examples/gcn.py`, `examples/gat.py`): dense input features
with dense dropout, normalised adjacency cached once. Cora is read from data/cora/*.csv,
so nothing is downloaded. Needs `pip install torch torch_geometric`.
"""
import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch_geometric.nn import GATConv, GCNConv

CORA = Path(__file__).resolve().parent.parent / "data" / "cora"


def load_cora():
    nodes = [line.split(",") for line in (CORA / "nodes.csv").read_text().split("\n")[1:] if line]
    n = len(nodes)
    labels = torch.tensor([int(label) for _, label, _ in nodes])
    split = [s for _, _, s in nodes]
    x = torch.zeros(n, 1433)
    for line in (CORA / "features.csv").read_text().split("\n")[1:]:
        if line:
            node, feature = line.split(",")
            x[int(node), int(feature)] = 1.0
    x = x / x.sum(1, keepdim=True).clamp(min=1)
    edges = [tuple(map(int, line.split(","))) for line in (CORA / "edges.csv").read_text().split("\n")[1:] if line]
    src = [s for s, d in edges] + [d for s, d in edges]
    dst = [d for s, d in edges] + [s for s, d in edges]
    edge_index = torch.tensor([src, dst])
    masks = {name: torch.tensor([s == name for s in split]) for name in ("train", "val", "test")}
    return x, edge_index, labels, masks


class GCN(torch.nn.Module):
    def __init__(self, d_in, classes):
        super().__init__()
        self.conv1 = GCNConv(d_in, 16, cached=True)
        self.conv2 = GCNConv(16, classes, cached=True)

    def forward(self, x, edge_index):
        x = F.dropout(x, 0.5, self.training)
        x = F.relu(self.conv1(x, edge_index))
        x = F.dropout(x, 0.5, self.training)
        return self.conv2(x, edge_index)


class GAT(torch.nn.Module):
    def __init__(self, d_in, classes, heads=8):
        super().__init__()
        self.conv1 = GATConv(d_in, 8, heads=heads, dropout=0.6)
        self.conv2 = GATConv(8 * heads, classes, heads=1, concat=False, dropout=0.6)

    def forward(self, x, edge_index):
        x = F.dropout(x, 0.6, self.training)
        x = F.elu(self.conv1(x, edge_index))
        x = F.dropout(x, 0.6, self.training)
        return self.conv2(x, edge_index)


def make(name, data, seed):
    torch.manual_seed(seed)
    x, edge_index, labels, masks = data
    model = GCN(x.shape[1], 7) if name == "gcn" else GAT(x.shape[1], 7)
    lr = 0.01 if name == "gcn" else 0.005
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=5e-4)
    return model, optimizer


def step(model, optimizer, data):
    x, edge_index, labels, masks = data
    model.train()
    optimizer.zero_grad()
    out = model(x, edge_index)
    loss = F.cross_entropy(out[masks["train"]], labels[masks["train"]])
    loss.backward()
    optimizer.step()
    return loss.item()


def time_epochs(name, data, epochs, warmup):
    model, optimizer = make(name, data, 0)
    times = []
    for epoch in range(warmup + epochs):
        started = time.perf_counter()
        step(model, optimizer, data)
        if epoch >= warmup:
            times.append((time.perf_counter() - started) * 1e3)
    return statistics.mean(times), min(times)


@torch.no_grad()
def evaluate(model, data, split):
    x, edge_index, labels, masks = data
    model.eval()
    out = model(x, edge_index)
    loss = F.cross_entropy(out[masks[split]], labels[masks[split]]).item()
    accuracy = (out[masks[split]].argmax(1) == labels[masks[split]]).float().mean().item()
    return loss, accuracy


def train_accuracy(name, data, seed):
    """Train as configs/<name>_cora.toml does: keep the epoch with the lowest validation loss."""
    model, optimizer = make(name, data, seed)
    epochs, patience = (200, 0) if name == "gcn" else (1000, 100)
    best_loss, best_state, waited = float("inf"), None, 0
    for _ in range(epochs):
        step(model, optimizer, data)
        val_loss, _ = evaluate(model, data, "val")
        if val_loss < best_loss:
            best_loss, waited = val_loss, 0
            best_state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            waited += 1
            if patience and waited >= patience:
                break
    model.load_state_dict(best_state)
    return evaluate(model, data, "test")[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--models", default="gcn,gat")
    parser.add_argument("--accuracy", type=int, default=0, metavar="SEEDS")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_cora()
    for name in args.models.split(","):
        mean, best = time_epochs(name, data, args.epochs, args.warmup)
        print(f"torch {name} cora ({torch.get_num_threads()} threads, torch {torch.__version__}): {mean:.2f} ms/epoch mean, {best:.2f} ms min over {args.epochs} epochs", flush=True)
        if args.accuracy:
            accuracies = [train_accuracy(name, data, seed) for seed in range(args.accuracy)]
            print(f"torch {name} cora: test accuracy {statistics.mean(accuracies) * 100:.2f} +- {statistics.stdev(accuracies) * 100:.2f} % over {args.accuracy} seeds", flush=True)


if __name__ == "__main__":
    main()
