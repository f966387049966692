"""ResNet-20 for CIFAR (He et al. 2016, 16-32-64 channels): the subject of open_lth and Renda et al."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lthray.models.common import MODELS, CamModel, GlobalAvgPool


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        # 1x1 projection shortcut where the shape changes, as in open_lth's cifar_resnet.
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNetCifar(CamModel):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, depth: int = 20, width: int = 16) -> None:
        super().__init__()
        n = (depth - 2) // 6
        self.conv = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        stages, cin = [], width
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            blocks = [Block(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1) for j in range(n)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.cam_layer = self.layer3  # 8x8 at 32x32 input
        self.fc = nn.Linear(cin, num_classes)
        self.pool = GlobalAvgPool()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        return self.pool(self.layer3(self.layer2(self.layer1(x))))


MODELS.register("resnet20")(lambda num_classes, in_channels=3: ResNetCifar(num_classes, in_channels, depth=20))
