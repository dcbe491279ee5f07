#!/usr/bin/env python3
"""Train a Cora config over several seeds and print the mean and std of test accuracy.

    scripts/cora_seeds.py configs/gcn_cora.toml            # 10 seeds on CPU
    scripts/cora_seeds.py configs/gat_cora.toml --devices cpu,wgpu
    scripts/cora_seeds.py configs/gat_cora.toml --seeds 3 --set train.epochs=300

With several devices, each seed runs on each device and the per-seed difference is shown:
the seed fixes initial weights and dropout masks on the host, so devices should agree
to within float rounding. Uses the shopnet binary that `cargo build` makes (override with
SHOPNET_BIN).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def binary():
    if os.environ.get("SHOPNET_BIN"):
        return os.environ["SHOPNET_BIN"]
    subprocess.run(["cargo", "build", "-q"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(Path(target) / "debug" / "shopnet")


def train(bin_path, config, seed, device, extra, out):
    args = [bin_path, "train", "--config", config, "--device", device, "--out", out, "--set", f"train.seed={seed}"]
    for item in extra:
        args += ["--set", item]
    started = time.time()
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"seed {seed} on {device} failed: {result.stderr.strip()}")
    run = next(line.split()[1] for line in result.stdout.splitlines() if line.startswith("run "))
    report = json.loads((Path(run) / "report.json").read_text())
    return report["metrics"]["test_accuracy"], report["best_epoch"], time.time() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--devices", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    devices = args.devices.split(",")
    bin_path = binary()
    results = {d: [] for d in devices}
    with tempfile.TemporaryDirectory() as out:
        for seed in range(args.seeds):
            cells = []
            for device in devices:
                accuracy, best_epoch, seconds = train(bin_path, args.config, seed, device, args.overrides, out)
                results[device].append(accuracy)
                cells.append(f"{device} {accuracy * 100:.1f} % (best epoch {best_epoch}, {seconds:.0f} s)")
            line = f"seed {seed}: " + "  ".join(cells)
            if len(devices) > 1:
                line += f"  diff {abs(results[devices[0]][-1] - results[devices[1]][-1]) * 100:.1f} pt"
            print(line, flush=True)
    for device in devices:
        values = results[device]
        std = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{args.config} on {device}: test accuracy {statistics.mean(values) * 100:.2f} +- {std * 100:.2f} % over {len(values)} seeds")


if __name__ == "__main__":
    main()
