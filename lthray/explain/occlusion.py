"""Occlusion maps through captum: the third attribution method, and the one no training loss here reads.

Occlusion (Zeiler & Fergus 2014) slides a window of baseline pixels (zeros: the images are standardised,
so 0 is the mean image) across the input and scores each pixel by how much the class logit falls while
the window covers it, averaged over the windows that cover it (captum.attr.Occlusion). It needs only
forward passes, so it is model-agnostic and shares nothing with Grad-CAM's gradients (the explanation-
preserving loss) or LRP's rules: the held-out yardstick of the preservation study (issue 34). As for
LRP, the map is of the true class, summed over colour channels, its positive part normalised to [0, 1]
per image. Window and stride are explain.occlusion_window / occlusion_stride (4 and 2 on a 28x28 image:
13 x 13 windows, 169 forward passes of each probe batch).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lthray.modes import eval_mode


@torch.no_grad()
def attributions(model: nn.Module, x: torch.Tensor, y: torch.Tensor, window: int, stride: int,
                 batch: int = 64) -> torch.Tensor:
    """captum's occlusion attributions (N, C, H, W) of class y[i] for image x[i]: the logit's drop when a
    window x window square of zeros (all channels) covers the pixel, averaged over the windows that do."""
    from captum.attr import Occlusion

    out = []
    with eval_mode(model):
        occ = Occlusion(model)
        for i in range(0, len(x), batch):
            xb = x[i : i + batch]
            out.append(occ.attribute(xb, sliding_window_shapes=(xb.shape[1], window, window),
                                     strides=(xb.shape[1], stride, stride), baselines=0,
                                     target=y[i : i + batch], perturbations_per_eval=8))
    return torch.cat(out)


def occlusion_maps(model: nn.Module, x: torch.Tensor, y: torch.Tensor, window: int = 4, stride: int = 2) -> np.ndarray:
    """Occlusion maps (N, H, W) in [0, 1] of class y[i] for image x[i] (see the module's docstring)."""
    maps = attributions(model, x, y, window, stride).sum(1).clamp(min=0)
    top = maps.flatten(1).amax(1).clamp(min=torch.finfo(maps.dtype).tiny)[:, None, None]
    return (maps / top).float().cpu().numpy()
