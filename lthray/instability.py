"""Instability analysis: linear mode connectivity of two copies of a network (Frankle et al. 2020).

Two copies start from the same weights and mask and train with different data orders. If the test
error along the straight line between their end points never rises above the ends, the start was
*stable* to SGD noise; Frankle et al. found that IMP finds matching tickets exactly from the rewind
points k that are stable, so the barrier against k is how a user picks the rewind point.

Written here (not taken from a library) because no maintained package does interpolation with BN
re-estimation for plain torch models; the arithmetic is a few lines and each piece is tested alone.
"""

from __future__ import annotations

import torch
from torch import nn

from lthray.config import InstabilityConfig
from lthray.data import Data, epoch_order
from lthray.train import evaluate

State = dict[str, torch.Tensor]


def interpolate(a: State, b: State, alpha: float) -> State:
    """(1 - alpha) * a + alpha * b for every floating tensor; integer buffers (BN's batch counters)
    are taken from `a`. Two weights pruned in both are zero in both, so the path stays masked."""
    return {k: torch.lerp(a[k], b[k].to(a[k]), alpha) if a[k].is_floating_point() else a[k] for k in a}


@torch.no_grad()
def recompute_bn(model: nn.Module, x: torch.Tensor, batches: int, batch_size: int, seed: int) -> None:
    """Re-estimate every BatchNorm's running statistics on `batches` training batches (a fixed,
    seeded order, no augmentation): an interpolated network's stored statistics belong to neither end.
    Cumulative averages (momentum=None) so every batch counts equally."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [(m, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    was = model.training
    model.train()
    order = epoch_order(len(x), seed, 0)[: batches * batch_size].to(x.device)
    try:
        for i in range(0, len(order), batch_size):
            model(x[order[i : i + batch_size]])
    finally:
        for m, mom in saved:
            m.momentum = mom
        model.train(was)


def barrier(errors: list[float]) -> float:
    """The error barrier of a path: its highest error minus the mean of its two ends (Frankle et al.)."""
    return max(errors) - (errors[0] + errors[-1]) / 2


def error_path(model: nn.Module, a: State, b: State, data: Data, cfg: InstabilityConfig, *, batch_size: int,
               seed: int) -> list[float]:
    """Test error at `cfg.points` evenly spaced points from a (alpha = 0) to b (alpha = 1), BN statistics
    re-estimated at each. The model is left holding `a`."""
    n = cfg.test_size or len(data.test_x)
    x, y = data.test_x[:n], data.test_y[:n]
    errors = []
    try:
        for alpha in torch.linspace(0, 1, cfg.points).tolist():
            model.load_state_dict(interpolate(a, b, alpha))
            recompute_bn(model, data.train_x, cfg.bn_batches, batch_size, seed)
            errors.append(1.0 - evaluate(model, x, y)[0])
    finally:
        model.load_state_dict(a)
    return errors
