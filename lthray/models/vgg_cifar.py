"""VGG-11 with BatchNorm for CIFAR (open_lth's cifar_vgg_11 layout: four pools, 512 channels at 2x2)."""

from __future__ import annotations

import torch
from torch import nn

from lthray.models.common import MODELS, CamModel, GlobalAvgPool, conv_bn

CFG_11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512]


class VGGCifar(CamModel):
    def __init__(self, num_classes: int = 10, in_channels: int = 3, cfg: list = CFG_11) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(conv_bn(cin, int(v)))
                cin = int(v)
        self.body = nn.Sequential(*layers)
        # The last stage is 2x2, too coarse for a map worth comparing: explain the 4x4 stage before the last pool.
        last_pool = max(i for i, m in enumerate(layers) if isinstance(m, nn.MaxPool2d))
        self.cam_layer = self.body[last_pool - 1]
        self.fc = nn.Linear(cin, num_classes)
        self.pool = GlobalAvgPool()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.body(x))


MODELS.register("vgg11_bn")(VGGCifar)
