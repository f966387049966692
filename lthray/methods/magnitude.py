"""IMP, its random-pruning baseline and two controls: random reinitialisation, and the layer-wise shuffled mask."""

from __future__ import annotations

import torch

from lthray.masks import Scores, prunable
from lthray.methods.base import CRITERIA, METHODS, Method, ScoreContext


@CRITERIA.register("magnitude")
def magnitude(ctx: ScoreContext) -> Scores:
    """|w|: the lottery-ticket criterion (Frankle & Carbin 2019)."""
    return {k: w.detach().abs() for k, w in prunable(ctx.model).items() if k in ctx.mask}


@CRITERIA.register("random")
def random(ctx: ScoreContext) -> Scores:
    """Uniform random scores: the random-pruning baseline every pruning paper should beat."""
    g = torch.Generator().manual_seed(ctx.seed * 1_000_003 + ctx.level)
    return {k: torch.rand(w.shape, generator=g).to(w.device) for k, w in prunable(ctx.model).items()
            if k in ctx.mask}


_FRESH = ("it trains each level from a fresh starting point: the rewind point's weights or a new "
          "initialisation, which only weight rewinding defines")

METHODS.register("imp")(Method("magnitude", paper="Frankle & Carbin 2019; Frankle et al. 2020",
                               color="#1f77b4"))
METHODS.register("random")(Method("random", paper="random pruning baseline (Frankle & Carbin 2019)",
                                  color="#7f7f7f"))
METHODS.register("reinit")(Method("magnitude", reinit=True, rewinds=("weight",), why_rewinds=_FRESH,
                                  paper="Frankle & Carbin 2019, random reinitialisation", color="#8c564b"))
METHODS.register("shuffled")(Method("magnitude", shuffle=True, rewinds=("weight",), why_rewinds=_FRESH,
                                    paper="Frankle et al. 2021, IMP's mask shuffled within each layer",
                                    color="#6b6ecf"))
