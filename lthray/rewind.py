"""Rewind modes: what a pruned level starts retraining from, one registered function each.

A mode takes the model (holding the previous level's trained weights), the rewind point saved at step k
during dense training, and the trial's config; it sets the model's starting weights and returns the
schedule to train. A new mode is one more registered function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from lthray.registry import Registry

if TYPE_CHECKING:
    from lthray.config import TrialConfig


@dataclass(frozen=True)
class Schedule:
    """Optimizer steps [start, end) of the trial's schedule; `constant_lr` replaces the schedule's rate."""

    start: int
    end: int
    constant_lr: float | None = None


Rewind = Callable[[nn.Module, dict[str, torch.Tensor], "TrialConfig"], Schedule]
REWINDS: Registry[Rewind] = Registry("rewind mode")


@REWINDS.register("weight")
def weight(model: nn.Module, rewind_point: dict[str, torch.Tensor], cfg: TrialConfig) -> Schedule:
    """Weights *and* BN buffers back to step k, then the schedule from k (Frankle et al. 2020)."""
    model.load_state_dict(rewind_point)
    return Schedule(cfg.rewind_steps, cfg.total_steps)


@REWINDS.register("lr")
def lr(model: nn.Module, rewind_point: dict[str, torch.Tensor], cfg: TrialConfig) -> Schedule:
    """Keep the trained weights, replay the learning-rate schedule from step k (Renda et al. 2020)."""
    return Schedule(cfg.rewind_steps, cfg.total_steps)


@REWINDS.register("finetune")
def finetune(model: nn.Module, rewind_point: dict[str, torch.Tensor], cfg: TrialConfig) -> Schedule:
    """Keep the trained weights and train as many steps as rewinding would, at the final, small rate
    (Renda et al.'s fine-tuning baseline)."""
    return Schedule(cfg.rewind_steps, cfg.total_steps, cfg.train.lr * cfg.train.final_lr)
