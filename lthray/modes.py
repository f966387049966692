"""The one way lthray switches a model to eval mode: always restored, so no caller leaves a model in eval
mode by side effect (BatchNorm would then stop updating its statistics during the next training)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def eval_mode(model: nn.Module, *, clear_grads: bool = False) -> Iterator[nn.Module]:
    """Eval mode inside the block; on exit the model's train/eval mode is restored and, with
    `clear_grads`, every .grad dropped (scoring and Grad-CAM leave gradients behind that training must
    not inherit)."""
    was = model.training
    if clear_grads:
        model.zero_grad(set_to_none=True)
    model.eval()
    try:
        yield model
    finally:
        if clear_grads:
            model.zero_grad(set_to_none=True)
        model.train(was)
