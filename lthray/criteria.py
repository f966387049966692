"""Pruning criteria: each returns a per-weight score (higher = keep), one tensor per prunable weight.

Guided methods mix two criteria with the guidance weight g:
    score = (1 - g) * normalise(base) + g * normalise(guide)
`normalise` divides by the largest alive score over all layers. It is a single positive scale per
score set, so it preserves the global ranking: g = 0 gives exactly the base criterion's mask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lthray.masks import Mask, Scores, prunable
from lthray.registry import Registry


@dataclass
class ScoreContext:
    """Everything a criterion may look at. Criteria must not modify the model."""

    model: nn.Module
    mask: Mask
    seed: int  # for stochastic criteria: seeded per (trial seed, level)
    level: int
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. data, dense CAMs, rewind weights


Criterion = Callable[[ScoreContext], Scores]
CRITERIA: Registry[Criterion] = Registry("criterion")


@CRITERIA.register("magnitude")
def magnitude(ctx: ScoreContext) -> Scores:
    """|w|: the lottery-ticket criterion (Frankle & Carbin 2019)."""
    return {k: w.detach().abs() for k, w in prunable(ctx.model).items() if k in ctx.mask}


@CRITERIA.register("random")
def random(ctx: ScoreContext) -> Scores:
    """Uniform random scores: the random-pruning baseline every pruning paper should beat."""
    g = torch.Generator().manual_seed(ctx.seed * 1_000_003 + ctx.level)
    return {k: torch.rand(w.shape, generator=g).to(w.device) for k, w in prunable(ctx.model).items() if k in ctx.mask}


def normalise(scores: Scores, mask: Mask) -> Scores:
    """Scores divided by the largest alive |score| across layers (monotone: rankings are unchanged)."""
    top = max((s[mask[k]].abs().max() for k, s in scores.items() if mask[k].any()), default=torch.tensor(1.0))
    top = top if float(top) > 0 else torch.ones_like(top)
    return {k: s / top for k, s in scores.items()}


def mix(base: Scores, guide: Scores, g: float, mask: Mask) -> Scores:
    """(1 - g) * normalise(base) + g * normalise(guide); g = 0 returns normalise(base) exactly."""
    a = normalise(base, mask)
    if g == 0:
        return a
    b = normalise(guide, mask)
    return {k: (1 - g) * a[k] + g * b[k] for k in a}


@dataclass(frozen=True)
class Method:
    """A sweepable pruning method: a base criterion, optionally mixed with a guide criterion by g."""

    base: str
    guide: str | None = None


METHODS: Registry[Method] = Registry("method")
METHODS.register("imp")(Method("magnitude"))
METHODS.register("random")(Method("random"))


def scores_for(method: str, ctx: ScoreContext, guidance_weight: float = 0.0) -> Scores:
    """Per-weight scores of `method` at this level."""
    m = METHODS.get(method)
    base = CRITERIA.get(m.base)(ctx)
    if m.guide is None:
        return base
    guide = CRITERIA.get(m.guide)(ctx) if guidance_weight > 0 else base
    return mix(base, guide, guidance_weight, ctx.mask)
