"""What every model offers the rest of lthray."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lthray.registry import Registry


class CamModel(nn.Module):
    """Base of lthray's models: `cam_layer` for Grad-CAM, `features` for concepts, `fc` the head."""

    cam_layer: nn.Module
    fc: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class GlobalAvgPool(nn.AdaptiveAvgPool2d):
    """(N, C, H, W) -> (N, C), the mean over H and W. A module rather than a bare `x.mean` so that LRP
    (zennit) applies its average-pooling rule here (relevance shared in proportion to each position's
    activation, not evenly); its forward is the same `mean` as before, bit for bit."""

    def __init__(self) -> None:
        super().__init__(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


MODELS: Registry[Callable[[int, int], CamModel]] = Registry("model")  # (num_classes, in_channels)


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias: BN follows) + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )
