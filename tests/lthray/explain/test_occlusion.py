import numpy as np
import pytest
import torch
from torch import nn

from lthray.explain.occlusion import attributions, occlusion_maps


def _linear(c: int, h: int, w: int, classes: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    lin = nn.Linear(c * h * w, classes, dtype=torch.float64)
    return nn.Sequential(nn.Flatten(), lin), lin.weight.detach().reshape(classes, c, h, w)


def test_occlusion_of_a_linear_model_is_the_closed_form():
    """For logits W x + b and zero baselines, a window's drop is the sum of w_j x_j over it; each pixel
    gets the mean drop of the windows covering it (window 1: the pixel's w_j x_j summed over its channels, since
    a window spans all channels). captum accumulates in float32 whatever the input's dtype: hence atol 1e-6."""
    model, w = _linear(2, 6, 6, 3)
    x = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 2])
    contrib = w[y] * x  # N x C x H x W: each input's share of the true class's logit
    pixel = contrib.sum(1, keepdim=True).expand(4, 2, 6, 6)
    assert torch.allclose(attributions(model, x, y, window=1, stride=1).double(), pixel, atol=1e-6)

    got = attributions(model, x, y, window=2, stride=2)  # disjoint 2x2 windows, all channels at once
    block = contrib.sum(1, keepdim=True).reshape(4, 1, 3, 2, 3, 2).sum((3, 5), keepdim=True)
    assert torch.allclose(got.double(), block.expand(4, 2, 3, 2, 3, 2).reshape(4, 2, 6, 6), atol=1e-6)

    got = attributions(model, x, y, window=2, stride=1)  # overlapping windows: the mean over those covering
    s = contrib.sum(1)
    hand = torch.zeros(4, 6, 6, dtype=torch.float64)
    count = torch.zeros(6, 6, dtype=torch.float64)
    for i in range(5):
        for j in range(5):
            hand[:, i : i + 2, j : j + 2] += s[:, i : i + 2, j : j + 2].sum((1, 2))[:, None, None]
            count[i : i + 2, j : j + 2] += 1
    assert torch.allclose(got.double(), (hand / count)[:, None].expand(4, 2, 6, 6), atol=1e-6)


def test_occlusion_maps_are_the_positive_part_scaled_to_one_per_image():
    model, w = _linear(1, 4, 4, 2, seed=1)
    x = torch.randn(3, 1, 4, 4, dtype=torch.float64)
    y = torch.tensor([1, 0, 1])
    maps = occlusion_maps(model, x, y, window=1, stride=1)
    pos = (w[y] * x).sum(1).clamp(min=0)
    assert maps.shape == (3, 4, 4) and maps.max(axis=(1, 2)) == pytest.approx(np.ones(3))
    assert np.allclose(maps, (pos / pos.flatten(1).amax(1)[:, None, None]).numpy(), atol=1e-6)
