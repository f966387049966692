"""Rewind modes: what a pruned level starts retraining from, one registered function each.

A mode takes the model (holding the previous level's trained weights), the rewind point saved at step k
during dense training, and the trial's config; it sets the model's starting weights and returns the
schedule to train. A new mode is one more registered function.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lthray.config import TrialConfig
from lthray.registry import Registry
from lthray.schedule import Schedule, from_rewind

Rewind = Callable[[nn.Module, dict[str, torch.Tensor], TrialConfig], Schedule]
REWINDS: Registry[Rewind] = Registry("rewind mode")


@REWINDS.register("weight")
def weight(model: nn.Module, rewind_point: dict[str, torch.Tensor], cfg: TrialConfig) -> Schedule:
    """Weights *and* BN buffers back to step k, then the schedule from k (Frankle et al. 2020)."""
    model.load_state_dict(rewind_point)
    return from_rewind(cfg)


@REWINDS.register("lr")
def lr(model: nn.Module, rewind_point: dict[str, torch.Tensor], cfg: TrialConfig) -> Schedule:
    """Keep the trained weights, replay the learning-rate schedule from step k (Renda et al. 2020)."""
    return from_rewind(cfg)


@REWINDS.register("finetune")
def finetune(model: nn.Module, rewind_point: dict[str, torch.Tensor], cfg: TrialConfig) -> Schedule:
    """Keep the trained weights and train as many steps as rewinding would, at the final, small rate
    (Renda et al.'s fine-tuning baseline)."""
    return from_rewind(cfg, cfg.train.lr * cfg.train.final_lr)
