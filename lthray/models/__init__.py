"""CIFAR-sized models. Each names its Grad-CAM target layer (`cam_layer`, a spatial map > 1x1 at
32x32 input) and exposes `features(x)`, the penultimate (post-pool) features, and `fc`, the classifier."""

from __future__ import annotations

import torch
from torch import nn

from lthray.models import convnet, resnet_cifar, vgg_cifar  # noqa: F401  (register)
from lthray.models.common import MODELS, CamModel

__all__ = ["MODELS", "CamModel", "build"]


def build(name: str, num_classes: int, seed: int, in_channels: int = 3) -> CamModel:
    """A freshly initialised model; `seed` fixes its initial weights (the lottery ticket's 'init')."""
    builder = MODELS.get(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = builder(num_classes, in_channels)
    assert isinstance(model, nn.Module)
    return model
