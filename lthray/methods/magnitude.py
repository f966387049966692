"""IMP, its random-pruning baseline, two controls (random reinitialisation, the layer-wise shuffled mask) and two
mask-fixed retraining arms (explanation-preserving, function-preserving)."""

from __future__ import annotations

import torch

from lthray.masks import Scores, prunable
from lthray.methods.base import CRITERIA, METHODS, Method, Needs, ScoreContext


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

# The mask-fixed arms (Method.retrain): IMP's lineage, each level's network retrained from the level's start
# under IMP's mask with one extra loss, so that only the loss differs from IMP's row.
METHODS.register("imp_fid")(Method("magnitude", retrain="fid", needs=Needs(dense_cams=True),
                                   paper="IMP's masks retrained with the Grad-CAM fidelity loss (lambda_fid)",
                                   color="#ad494a"))
METHODS.register("imp_kd")(Method("magnitude", retrain="kd", needs=Needs(dense_logits=True),
                                  paper="IMP's masks retrained with distillation to the dense logits (Hinton et al. "
                                        "2015): the function-preserving control", color="#637939"))
