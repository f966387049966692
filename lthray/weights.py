"""Weights over training, of the network a level's row describes: its first layer's filters (to draw them
level by level) and how far its kept weights moved in the level's training, |w_end - w_start| from the
weights the training began with (for a rewound ticket, the rewind point). The seed paper asks to see the
weights at each stage and to find the weights training does not change; `STILL` declares what "does not
change" means here."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from lthray import masks

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)  # of |w_end - w_start| over the kept weights (weight_move_quantiles)
# A kept weight that moved less than this fraction of its layer's starting RMS (over the layer's kept
# weights) is one training left where it was. Relative to the layer, because layers' weight scales differ
# (He initialisation's scale falls with fan-in).
STILL = 0.01


def first_conv(model: nn.Module) -> str | None:
    """The state_dict name of the first convolution's weight (None for a model without one)."""
    return next((n for n, w in masks.prunable(model).items() if w.dim() == 4), None)


@torch.no_grad()
def columns(model: nn.Module, start: dict[str, torch.Tensor], mask: masks.Mask) -> dict[str, Any]:
    """The row's weight columns of `model` (its trained weights) against `start` under `mask`."""
    moved, still, total = [], 0, 0
    for name, w in masks.prunable(model).items():
        keep = mask[name].cpu() if name in mask else torch.ones_like(w, dtype=torch.bool, device="cpu")
        w0, w1 = start[name].cpu().double()[keep], w.cpu().double()[keep]
        if w0.numel() == 0:
            continue
        d = (w1 - w0).abs()
        still += int((d < STILL * w0.pow(2).mean().sqrt()).sum())
        total += d.numel()
        moved.append(d.numpy())
    first = first_conv(model)
    out: dict[str, Any] = {"weight_move_quantiles": None, "weights_still": None, "first_filters": None,
                           "first_filters_shape": None}
    if total:
        out["weight_move_quantiles"] = np.quantile(np.concatenate(moved), QUANTILES).tolist()
        out["weights_still"] = still / total
    if first is not None:
        w = dict(model.named_parameters())[first].detach().float().cpu()
        out["first_filters"], out["first_filters_shape"] = w.flatten().tolist(), list(w.shape)
    return out
