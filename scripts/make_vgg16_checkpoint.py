"""Writes a small checkpoint in torchvision's VGG16 layout, for shopnet's loading test.

torchvision's `vgg16` is `features` (an nn.Sequential of Conv2d / ReLU / MaxPool2d, so its
convolutions sit at indices 0, 2, 5, 7, 10, ...), `avgpool` (AdaptiveAvgPool2d 7x7) and
`classifier` (Linear at 0, 3, 6). This builds that exact module tree by hand (torchvision
need not be installed; with it, `torchvision.models.vgg16()` gives the same state dict
names) with every width divided by 16 and 32 hidden units, so the file stays small, and
saves its state dict as .pth and .safetensors plus the logits of one fixed input.

    python3 scripts/make_vgg16_checkpoint.py tests/data
"""
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

# torchvision's cfgs["D"] with the widths divided by 16.
LAYOUT = [4, 4, "M", 8, 8, "M", 16, 16, 16, "M", 32, 32, 32, "M", 32, 32, 32, "M"]
HIDDEN = 32
CLASSES = 10


class VGG(nn.Module):
    def __init__(self):
        super().__init__()
        layers, channels = [], 3
        for v in LAYOUT:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, HIDDEN), nn.ReLU(True), nn.Dropout(),
            nn.Linear(HIDDEN, HIDDEN), nn.ReLU(True), nn.Dropout(),
            nn.Linear(HIDDEN, CLASSES),
        )

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def fixed_input():
    # The same formula is in tests/images.rs: x[i] = sin(0.01 * i) over the flat 1x3x32x32 input.
    return torch.sin(torch.arange(3 * 32 * 32, dtype=torch.float64) * 0.01).float().reshape(1, 3, 32, 32)


def main():
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = VGG().eval()
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    torch.save(state, out / "vgg16_tiny.pth")
    save_file(state, str(out / "vgg16_tiny.safetensors"))
    with torch.no_grad():
        logits = model(fixed_input())[0].tolist()
    (out / "vgg16_tiny.json").write_text(json.dumps({"layout": LAYOUT, "hidden": HIDDEN, "logits": logits}, indent=1) + "\n")
    print("keys:", ", ".join(state))
    print("logits:", logits)


if __name__ == "__main__":
    main()
