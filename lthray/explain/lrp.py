"""Layer-wise relevance propagation maps through zennit: the second attribution method, built unlike
Grad-CAM (a modified backward pass of every layer down to the pixels, not one layer's gradient-weighted
activations), so a finding that holds for both is about the network, not about Grad-CAM.

Composite: EpsilonPlusFlat (Flat in the first layer, ZPlus in the other convolutions, Epsilon in the
dense head), the one zennit recommends for convolutional networks (Kohlbrenner et al. 2020, 'Towards
best practice in explaining neural network decisions with LRP'), with BatchNorm merged into the
preceding convolution (SequentialMergeBatchNorm), the canonizer the Pruning-by-eXplaining code
(erfanhatefi/Pruning-by-eXplaining-in-PyTorch, get_zennit_canonizer) falls back to for such networks. It
scores its relevance with an all-Epsilon composite instead; the maps here follow the conv-net practice.
Relevance is taken for the true class, summed over colour channels, its positive part (evidence for the
class) normalised to [0, 1] per image, as Grad-CAM's maps are.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


def explainable_copy(model: nn.Module) -> nn.Module:
    """A copy zennit can hook: ReLUs not in place, and a zero bias on bias-free convolutions (zennit 0.5's
    BatchNorm merge cannot restore a missing bias). The model itself is never touched."""
    m = copy.deepcopy(model).eval()
    for mod in m.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
        if isinstance(mod, nn.Conv2d | nn.Linear) and mod.bias is None:
            mod.bias = nn.Parameter(torch.zeros(mod.weight.shape[0], dtype=mod.weight.dtype,
                                                device=mod.weight.device))
    return m


def lrp_maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 64) -> np.ndarray:
    """LRP maps (N, H, W) in [0, 1] of class y[i] for image x[i]."""
    from zennit.attribution import Gradient
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import EpsilonPlusFlat

    m = explainable_copy(model)
    out = []
    with Gradient(model=m, composite=EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])) as attr:
        for i in range(0, len(x), batch):
            xb, yb = x[i : i + batch], y[i : i + batch]
            logits = m(xb[:1])  # the head's width
            target = torch.nn.functional.one_hot(yb, logits.shape[1]).to(xb)
            _, rel = attr(xb, target)
            out.append(rel.detach().sum(1).clamp(min=0))
    maps = torch.cat(out)
    top = maps.flatten(1).amax(1).clamp(min=torch.finfo(maps.dtype).tiny)[:, None, None]
    return (maps / top).cpu().numpy().astype(np.float32)
