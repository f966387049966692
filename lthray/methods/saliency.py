"""|w * d objective / dw| over the guide images: the first-order importance several criteria share."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator

import torch
from torch import nn

from lthray.masks import Scores, prunable
from lthray.methods.base import ScoreContext
from lthray.modes import eval_mode

Objective = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@contextlib.contextmanager
def scoring_model(model: nn.Module, batch_stats: bool) -> Iterator[nn.Module]:
    """The model to differentiate: in eval mode (moving BN statistics), or with `batch_stats` a copy in
    train mode (batch statistics) whose BN running statistics stay untouched. Trained models are scored in
    eval mode (their BN statistics are the network); pruning at initialisation follows each method's
    authors (methods.at_init: SNIP eval, GraSP train). An untrained BN's running statistics (mean 0,
    variance 1) do not normalise anything, and GraSP's Hessian term depends on it (measured on
    Fashion-MNIST at 40% density, 1 epoch: GraSP masks scored in eval mode trained to 55.5%, in train
    mode to 71.1%)."""
    if batch_stats:
        yield copy.deepcopy(model).train()
    else:
        with eval_mode(model, clear_grads=True):
            yield model


def saliency(ctx: ScoreContext, objective: Objective, x: torch.Tensor, y: torch.Tensor, batch: int = 128,
             batch_stats: bool = False) -> Scores:
    """|w * d objective / dw| summed over the guide images (SNIP-style first-order importance).

    The model is left as it was found (see scoring_model for the BN mode).
    """
    with scoring_model(ctx.model, batch_stats) as model:
        params = prunable(model)
        for i in range(0, len(x), batch):
            objective(model, x[i : i + batch], y[i : i + batch]).backward()
        return {k: (w.detach() * w.grad).abs() if w.grad is not None else torch.zeros_like(w)
                for k, w in params.items() if k in ctx.mask}


def ce_sum(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(m(xb), yb, reduction="sum")
