"""An lthray plugin: your own network and data, no edit of lthray (docs/extending.md#a-plugin).

    lthray sweep --plugin examples/plugin_resnet18.py --preset smoke --set model.name=tv_resnet18 \\
        --set data.dataset=stripes --set concepts.enabled=false --search grid --choice prune.method=imp

Registers torchvision's ResNet-18 (its first convolution made 3x3, stride 1, and no max-pool, for small
inputs) and a synthetic dataset: 16x16 RGB images of a bright stripe whose orientation (and colour) is the
class, made here from a fixed seed, so the example runs offline anywhere.
"""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models import resnet18

import lthray.plugins as lp


@lp.model("tv_resnet18")
def build(num_classes: int, in_channels: int) -> torch.nn.Module:
    net = resnet18(num_classes=num_classes)
    net.conv1 = torch.nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
    net.maxpool = torch.nn.Identity()
    return lp.wrap(net, cam_layer="layer4", head="fc")


def _stripes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 60, (n, 16, 16, 3)).astype(np.uint8)
    pos = rng.integers(3, 13, n)
    for i in range(n):
        channel = y[i] % 3
        if y[i] < 2:
            x[i, pos[i] - 1 : pos[i] + 2, :, channel] = 230  # horizontal stripe
        else:
            x[i, :, pos[i] - 1 : pos[i] + 2, channel] = 230  # vertical stripe
    return x, y


@lp.dataset("stripes", num_classes=4, channels=3, flip=False, pad=1)
def load() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    rng = np.random.default_rng(0)
    train, test = _stripes(512, rng), _stripes(128, rng)
    return train, test, ["red horizontal", "green horizontal", "blue vertical", "red vertical"]
