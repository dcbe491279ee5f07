"""The shopnet reference VGG-style net in PyTorch, timed on the reference workload.

Same net, init and optimiser as `shopnet bench --model vgg`: blocks [64, 64, M, 128, 128, M,
256, 256, M] of conv3x3 + BatchNorm + ReLU, global average pool, Linear(256 -> 128) (the
embedding), Linear(128 -> 10); Kaiming-normal (fan-out) convolutions, N(0, 0.01) Linear
weights; Adam lr 1e-3. One training epoch over generated 3x32x32 images at batch 64, then
inference over the same images at batch 256, each timed once, no warm-up (as shopnet).

    python3 scripts/vgg_torch.py --threads 2 [--images 2048]
"""
import argparse
import time

import torch
from torch import nn

BLOCKS = [64, 64, "M", 128, 128, "M", 256, 256, "M"]


class Vgg(nn.Module):
    def __init__(self, blocks=BLOCKS, embedding=128, classes=10):
        super().__init__()
        layers, channels = [], 3
        for block in blocks:
            if block == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, block, 3, padding=1), nn.BatchNorm2d(block), nn.ReLU(inplace=True)]
                channels = block
        self.features = nn.Sequential(*layers)
        self.embedding = nn.Linear(channels, embedding)
        self.classifier = nn.Linear(embedding, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        embedded = self.embedding(self.features(x).mean(dim=(2, 3)))
        return embedded, self.classifier(embedded)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--infer-batch", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.rand(args.images, 3, 32, 32) * 2 - 1
    labels = torch.randint(0, 10, (args.images,))
    model = Vgg()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    model.train()
    started = time.perf_counter()
    for start in range(0, args.images, args.batch):
        x, y = images[start:start + args.batch], labels[start:start + args.batch]
        _, logits = model(x)
        loss = loss_fn(logits, y)
        loss.item()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    train_s = time.perf_counter() - started

    model.eval()
    started = time.perf_counter()
    with torch.no_grad():
        for start in range(0, args.images, args.infer_batch):
            model(images[start:start + args.infer_batch])
    infer_s = time.perf_counter() - started
    print(f"torch vgg {args.images} images 3x32x32 ({args.threads} threads): "
          f"train epoch {train_s:.3f} s (batch {args.batch}), inference {infer_s:.3f} s (batch {args.infer_batch})")


if __name__ == "__main__":
    main()
