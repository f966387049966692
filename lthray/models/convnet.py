"""A small 4-conv network: fast enough for tests and the embedded digits data.

Pooling right after the first conv keeps the 32x32 stage to one cheap 3->c conv: on digits this is ~3x
faster per image than pooling after the second conv, and reaches ~98.9% dense test accuracy in 6 epochs.
"""

from __future__ import annotations

import torch
from torch import nn

from lthray.models.common import MODELS, CamModel, GlobalAvgPool, conv_bn


class ConvNet(CamModel):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16) -> None:
        super().__init__()
        c = width
        self.body = nn.Sequential(
            conv_bn(in_channels, c), nn.MaxPool2d(2),  # 32x32 -> 16x16 (28x28 -> 14x14)
            conv_bn(c, 2 * c), nn.MaxPool2d(2),  # 8x8 (7x7 on Fashion-MNIST)
            conv_bn(2 * c, 4 * c),
            conv_bn(4 * c, 4 * c),
        )
        self.cam_layer = self.body[-1]  # an input/4 map: 8x8 on 32x32 inputs, 7x7 on 28x28 Fashion-MNIST
        self.fc = nn.Linear(4 * c, num_classes)
        self.pool = GlobalAvgPool()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))


MODELS.register("convnet")(ConvNet)
