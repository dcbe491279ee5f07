"""Writes N generated 32x32 grayscale images as IDX files (the MNIST layout), for the
embedding and search benchmarks: `PREFIX-images-idx3-ubyte` and `PREFIX-labels-idx1-ubyte`.
Each image is one of 10 class patterns plus noise, so neighbours have a class to agree on.

    python3 scripts/make_images_idx.py --count 100000 --out /tmp/bench100k
"""
import argparse
import struct

import numpy as np


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--side", type=int, default=32)
    parser.add_argument("--out", required=True, help="path prefix")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    side = args.side
    patterns = rng.integers(0, 256, size=(10, side, side)).astype(np.float32)
    labels = rng.integers(0, 10, size=args.count).astype(np.uint8)
    with open(f"{args.out}-images-idx3-ubyte", "wb") as images:
        images.write(struct.pack(">IIII", 0x0803, args.count, side, side))
        for start in range(0, args.count, 10_000):
            chunk = labels[start:start + 10_000]
            noise = rng.integers(0, 256, size=(len(chunk), side, side)).astype(np.float32)
            images.write((0.7 * patterns[chunk] + 0.3 * noise).astype(np.uint8).tobytes())
    with open(f"{args.out}-labels-idx1-ubyte", "wb") as out:
        out.write(struct.pack(">II", 0x0801, args.count))
        out.write(labels.tobytes())
    print(f"wrote {args.count} images of {side}x{side} to {args.out}-images-idx3-ubyte")


if __name__ == "__main__":
    main()
