"""The model-randomisation sanity check (Adebayo et al. 2018, 'Sanity checks for saliency maps'): an
attribution method that explains the *model* must give different maps once the model's weights are
replaced by random ones. Here all weights are re-initialised at once (the 'independent' variant, not the
cascade) and the maps of the trained and the randomised network are compared by Spearman rank
correlation per image, the paper's similarity measure. A method whose maps barely change (high
correlation) fails: it explains the input, not the network."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from lthray.explain.rank import spearman

MapFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], np.ndarray]
# A mean correlation at or above this between trained and random-weight maps fails the check: the maps
# keep at least half their pixel ranking when nothing the network learnt is left.
FAIL_AT = 0.5


def randomised(model: nn.Module, seed: int) -> nn.Module:
    """A copy of `model` with every parameter and buffer re-initialised (seeded), in eval mode."""
    m = copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for mod in m.modules():
            if hasattr(mod, "reset_parameters"):
                mod.reset_parameters()
            if hasattr(mod, "reset_running_stats"):
                mod.reset_running_stats()
    return m.eval()


def similarity(maps_fn: MapFn, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int,
               trained: np.ndarray | None = None) -> float:
    """Mean Spearman correlation of `maps_fn`'s maps of `model` (or `trained`, already computed) with its
    maps of the randomised model, on (x, y)."""
    a = maps_fn(model, x, y) if trained is None else trained
    b = maps_fn(randomised(model, seed), x, y)
    return float(np.nanmean(spearman(a, b)))


def verdict(mean: float, lo: float, hi: float) -> str:
    """'passes' when the interval lies below FAIL_AT, 'fails' when above it, else 'inconclusive'."""
    if np.isfinite(hi) and hi < FAIL_AT:
        return "passes"
    if np.isfinite(lo) and lo >= FAIL_AT:
        return "fails"
    return "inconclusive"
