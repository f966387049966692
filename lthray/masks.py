"""Pruning masks as pure tensor math.

A Mask is `dict[param_name, bool tensor]` over the prunable weights: conv and linear weights only,
never BatchNorm parameters or biases (pruning those is not what the lottery-ticket literature does).
"""

from __future__ import annotations

import torch
from torch import nn

Mask = dict[str, torch.Tensor]
Scores = dict[str, torch.Tensor]


def prunable(model: nn.Module) -> dict[str, nn.Parameter]:
    """Name -> weight of every Conv/Linear layer, in model order."""
    out = {}
    for mname, mod in model.named_modules():
        if isinstance(mod, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            out[f"{mname}.weight" if mname else "weight"] = mod.weight
    return out


def ones(model: nn.Module) -> Mask:
    """The dense mask."""
    return {k: torch.ones_like(w, dtype=torch.bool) for k, w in prunable(model).items()}


def count(mask: Mask) -> tuple[int, int]:
    """(weights kept, weights total)."""
    kept = sum(int(m.sum()) for m in mask.values())
    return kept, sum(m.numel() for m in mask.values())


def density(mask: Mask) -> float:
    """Fraction of prunable weights remaining."""
    kept, total = count(mask)
    return kept / total


def empty_layers(mask: Mask) -> list[str]:
    """The layers that keep no weight (the network is disconnected there), in mask order."""
    return [k for k, m in mask.items() if not bool(m.any())]


def _keep_top(scores: torch.Tensor, alive: torch.Tensor, n_keep: int) -> torch.Tensor:
    """Bool mask keeping exactly the `n_keep` highest-scoring alive entries (ties -> lower index wins)."""
    flat = torch.where(alive.flatten(), scores.flatten().double(), torch.tensor(float("-inf"), dtype=torch.float64,
                                                                                  device=scores.device))
    keep = torch.zeros_like(flat, dtype=torch.bool)
    if n_keep > 0:
        # stable sort on descending score: deterministic tie-breaking, exact count
        order = torch.sort(flat, descending=True, stable=True).indices
        keep[order[:n_keep]] = True
    return keep.view_as(alive)


def prune(scores: Scores, mask: Mask, fraction: float, scope: str = "global") -> Mask:
    """Remove `fraction` of the weights `mask` keeps, lowest score first; returns a new, nested mask.

    global: one ranking across all layers (scores must be comparable across layers);
    layer:  every layer loses the same fraction of its own remaining weights.
    Only weights alive in `mask` can be kept, so masks only ever shrink.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction={fraction!r} must be in [0, 1)")
    if set(scores) != set(mask):
        raise ValueError(f"scores and mask name different weights: {sorted(set(scores) ^ set(mask))}")
    if scope == "layer":
        return {k: _keep_top(scores[k], m, round(int(m.sum()) * (1.0 - fraction))) for k, m in mask.items()}
    if scope != "global":
        raise ValueError(f"scope={scope!r}; expected 'global' or 'layer'")
    names = list(mask)
    flat_s = torch.cat([scores[k].flatten().to(torch.float64) for k in names])
    flat_m = torch.cat([mask[k].flatten() for k in names])
    keep = _keep_top(flat_s, flat_m, round(int(flat_m.sum()) * (1.0 - fraction)))
    out, i = {}, 0
    for k in names:
        n = mask[k].numel()
        out[k] = keep[i : i + n].view_as(mask[k])
        i += n
    return out


def prune_to(scores: Scores, mask: Mask, target: float, scope: str = "global") -> Mask:
    """Prune `mask` to `target` density exactly: keep round(total * target) weights, lowest score first,
    ranked across all layers (global) or apportioned over the layers, each within one weight of its own
    share (layer). A schedule that declares its last density (prune.target_density) ends there to the
    weight, where a fixed rate per level would round once per level and drift."""
    if scope == "layer":
        quota = _apportion({k: m.numel() for k, m in mask.items()}, target)
        return {k: _keep_top(scores[k], m, min(int(m.sum()), quota[k])) for k, m in mask.items()}
    return prune(scores, mask, fraction_to(mask, target), scope)


def _apportion(sizes: dict[str, int], target: float) -> dict[str, int]:
    """Per-layer kept counts that sum to round(total * target), each layer's within one of size * target
    (largest remainders: rounding each layer alone would miss the total by up to half the layer count)."""
    want = round(sum(sizes.values()) * target)
    exact = {k: n * target for k, n in sizes.items()}
    out = {k: int(v) for k, v in exact.items()}
    by_remainder = sorted(sizes, key=lambda k: out[k] - exact[k])  # largest fractional part first; stable
    for k in by_remainder[: max(0, want - sum(out.values()))]:
        out[k] += 1
    return out


def fraction_to(mask: Mask, target: float) -> float:
    """The fraction of `mask`'s kept weights that `prune` must remove to keep round(total * target) of
    all weights (pruning at initialisation goes straight to a level's density, not by a fixed rate)."""
    kept, total = count(mask)
    n_keep = min(kept, round(total * target))
    return 1.0 - n_keep / kept if kept else 0.0


def shuffle_within_layers(mask: Mask, seed: int) -> Mask:
    """The same number of kept weights in every layer, at positions drawn uniformly at random within
    the layer (one seeded CPU generator, layers in mask order): the layer-wise shuffle of Frankle et al.
    2021 ("Pruning neural networks at initialization: why are we missing the mark?")."""
    gen, out = torch.Generator().manual_seed(seed), {}
    for name, m in mask.items():
        flat = torch.zeros(m.numel(), dtype=torch.bool)
        flat[torch.randperm(m.numel(), generator=gen)[: int(m.sum())]] = True
        out[name] = flat.view(m.shape).to(m.device)
    return out


def as_float(model: nn.Module, mask: Mask) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """(masked weights, their masks as float tensors): made once per level, so re-zeroing after every
    optimizer step is one fused multiply with no allocation."""
    params = prunable(model)
    ws = [params[k] for k in mask]
    # empty_like keeps each weight's layout (channels-last in float32 trials): a multiply of tensors
    # with equal strides is one contiguous loop.
    return ws, [torch.empty_like(w).copy_(m) for m, w in zip(mask.values(), ws, strict=True)]


@torch.no_grad()
def rezero(weights: list[torch.Tensor], float_masks: list[torch.Tensor]) -> None:
    """Hold pruned weights at exactly zero (after every optimizer step: momentum and weight decay move them)."""
    if weights:
        torch._foreach_mul_(weights, float_masks)


def apply(model: nn.Module, mask: Mask) -> None:
    """Zero the pruned weights of `model` in place."""
    rezero(*as_float(model, mask))


def to_device(mask: Mask, device: torch.device | str) -> Mask:
    return {k: v.to(device) for k, v in mask.items()}
