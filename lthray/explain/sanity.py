"""The model-randomisation sanity check (Adebayo et al. 2018, 'Sanity checks for saliency maps'): an
attribution method that explains the *model* must give different maps once the model's weights are
replaced by random ones. Here all weights are re-initialised at once (the 'independent' variant, not the
cascade) and the maps of the trained and the randomised network are compared by Spearman rank
correlation per image, the paper's similarity measure. A method whose maps barely change (high
correlation) fails: it explains the input, not the network.

`cascade` is the paper's other variant: the layers are re-initialised one at a time from the output down,
cumulatively, with the maps compared after each. It is what exposes a method that ignores the later
layers: Sixt et al. 2020 ('When explanations lie') show that LRP's z+ rules (EpsilonPlusFlat's z+ part)
keep their maps when only the top layers are randomised, which the all-at-once check cannot see."""

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


def _weight_groups(model: nn.Module) -> list[tuple[str, list[nn.Module]]]:
    """Each weight layer (convolution or linear) with the normalisation layers registered after it up to
    the next weight layer (its BatchNorm), in registration order, which for lthray's models is the
    forward order."""
    groups: list[tuple[str, list[nn.Module]]] = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            groups.append((name, [mod]))
        elif groups and isinstance(mod, nn.modules.batchnorm._NormBase):
            groups[-1][1].append(mod)
    return groups


def cascade(maps_fn: MapFn, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int,
            trained: np.ndarray) -> tuple[list[str], list[float]]:
    """Cascading randomisation (Adebayo et al. 2018): from the last weight layer down to the first, each
    layer (with its normalisation) re-initialised in turn and kept so; after each, the mean Spearman of
    the maps with the trained model's (`trained`). Returns the layer names in that order and the curve."""
    m = copy.deepcopy(model).eval()
    names, curve = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for name, mods in reversed(_weight_groups(m)):
            for mod in mods:
                mod.reset_parameters()  # a BatchNorm's resets its affine weights and running statistics
            names.append(name)
            curve.append(float(np.nanmean(spearman(trained, maps_fn(m, x, y)))))
    return names, curve


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
