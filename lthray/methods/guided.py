"""Guided methods: magnitude mixed with a guide by the guidance weight g (g = 0 is IMP exactly)."""

from __future__ import annotations

import torch
from torch import nn

from lthray.masks import Scores, prunable
from lthray.methods.base import CRITERIA, METHODS, Method, Needs, ScoreContext
from lthray.methods.saliency import saliency


@CRITERIA.register("cam")
def cam_saliency(ctx: ScoreContext) -> Scores:
    """Importance for classifying from the evidence the *dense* model pointed at.

    |w * dL/dw| with L the cross-entropy on guide (training) images multiplied by the dense model's
    Grad-CAM maps: weights that carry the dense model's explanation score high, so mixing this in keeps
    the pruned network looking where the dense one looked. (Inputs are normalised, so x * map fades the
    unexplained regions towards the dataset mean.)
    """
    x, y, maps = ctx.need("guide_x"), ctx.need("guide_y"), ctx.need("guide_maps")
    xm = x * maps.to(x)[:, None]
    return saliency(ctx, lambda m, xb, yb: torch.nn.functional.cross_entropy(m(xb), yb, reduction="sum"), xm, y)


@CRITERIA.register("concept")
def concept_saliency(ctx: ScoreContext) -> Scores:
    """Importance for the concepts that matter most to each class in the current PCBM.

    |w * dO/dw| with O = sum over guide images of the activations of the image's class's top-k concepts,
    weighted by their concept -> class weights.
    """
    pcbm = ctx.need("pcbm")
    top = torch.as_tensor(pcbm.top_concepts(ctx.concept_topk))  # (classes, k)
    coef = pcbm.coef

    def objective(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        acts = pcbm.concepts_of(m.features(xb).float())  # (B, n_concepts)
        idx = top.to(xb.device)[yb]  # (B, k)
        w = coef.to(xb.device)[yb.unsqueeze(1), idx]  # (B, k)
        return (acts.gather(1, idx) * w).sum()

    return saliency(ctx, objective, ctx.need("guide_x"), ctx.need("guide_y"))


@CRITERIA.register("movement")
def movement(ctx: ScoreContext) -> Scores:
    """How far each weight moved over the last training run (from its rewind point to the end).

    Weights that barely move during training are the ones pruned first (Zhou et al. 2019's 'movement'
    masks; Sanh et al. 2020): a weight training does not change contributes what it had at the start.
    """
    start = ctx.need("start_weights")
    return {k: (w.detach() - start[k].to(w)).abs() for k, w in prunable(ctx.model).items() if k in ctx.mask}


METHODS.register("cam_guided")(Method("magnitude", "cam", needs=Needs(guide_images=True, dense_cams=True),
                                      color="#ff7f0e"))
METHODS.register("concept_guided")(Method("magnitude", "concept", needs=Needs(guide_images=True, pcbm=True),
                                          color="#2ca02c"))
# Was 'stability' (rows and configs with that name still read: lthray.config.RENAMED)
METHODS.register("movement_guided")(Method("magnitude", "movement", needs=Needs(start_weights=True),
                                           paper="Zhou et al. 2019; Sanh et al. 2020", color="#9467bd"))
