"""CIFAR-sized models. Each names its Grad-CAM target layer (`cam_layer`, a spatial map > 1x1 at
32x32 input) and exposes `features(x)`, the penultimate (post-pool) features, and `fc`, the classifier."""

from __future__ import annotations

import torch
from torch import nn

from lthray.models import convnet, resnet_cifar, vgg_cifar  # noqa: F401  (register)
from lthray.models.common import MODELS, CamModel

__all__ = ["MODELS", "CamModel", "build"]


def build(name: str, num_classes: int, seed: int, in_channels: int = 3,
          dtype: torch.dtype = torch.float32) -> CamModel:
    """A freshly initialised model; `seed` fixes its initial weights (the lottery ticket's 'init').

    The weights are drawn in `dtype` itself: torch's CPU init kernels are compiled once per SIMD level
    and round differently (FMA), so a float32 init differs in its last bit between AVX2 and other CPUs;
    drawn in float64 it differs only at ~1e-16, which keeps a float64 trial reproducible everywhere."""
    builder = MODELS.get(name)
    default = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(dtype)
        try:
            model = builder(num_classes, in_channels)
        finally:
            torch.set_default_dtype(default)
    assert isinstance(model, nn.Module)
    return model
