"""Pruning at initialisation: SNIP, GraSP and SynFlow score the untrained starting weights."""

from __future__ import annotations

import copy

import torch

from lthray.masks import Scores, prunable
from lthray.methods.base import CRITERIA, METHODS, Method, Needs, ScoreContext
from lthray.methods.saliency import ce_sum, saliency, scoring_model


@CRITERIA.register("snip")
def snip(ctx: ScoreContext) -> Scores:
    """|w * dL/dw| at initialisation (Lee et al. 2019, 'SNIP: single-shot network pruning'), with L the
    cross-entropy on the guide (training) images: the connection sensitivity |dL/dc| of a mask variable c.

    In eval mode, as the authors' code scores it: snip-public's `prune` feeds `is_train: False`, so its
    batch norm uses the moving statistics (at initialisation mean 0, variance 1). Scoring with batch
    statistics instead gave masks with Jaccard 0.15-0.19 to these on the convnet, and at 1% density kept
    none of body.5.0.weight's 36,864 weights."""
    return saliency(ctx, ce_sum, ctx.need("guide_x"), ctx.need("guide_y"), batch_stats=False)


GRASP_TEMPERATURE = 200.0  # Wang et al. 2020 divide the logits by T = 200 so the Hessian is not ~0 at init


@CRITERIA.register("grasp")
def grasp(ctx: ScoreContext, batch: int = 128) -> Scores:
    """w * (H g) at initialisation (Wang et al. 2020, 'Picking winning tickets before training by preserving
    gradient flow'): g = dL/dw, H the Hessian of L. The paper removes the weights with the largest
    -w * Hg, i.e. keeps the largest w * Hg, which is this score; it can be negative.

    Written here because neither torch nor a maintained library ships it: two passes, g without a graph,
    then H g as the gradient of g_const . dL/dw (one Hessian-vector product, never the Hessian itself).
    In train mode (batch statistics), as the authors' code scores it: alecwangcq/GraSP's pruner/GraSP.py
    deep-copies the net with its `.eval()` commented out.
    """
    x, y = ctx.need("guide_x"), ctx.need("guide_y")
    with scoring_model(ctx.model, batch_stats=True) as model:
        params = prunable(model)
        names = [k for k in params if k in ctx.mask]
        ws = [params[k] for k in names]

        def loss(xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(model(xb) / GRASP_TEMPERATURE, yb, reduction="sum") / len(x)

        g = [torch.zeros_like(w) for w in ws]
        for i in range(0, len(x), batch):
            for acc, gi in zip(g, torch.autograd.grad(loss(x[i : i + batch], y[i : i + batch]), ws), strict=True):
                acc += gi
        hg = [torch.zeros_like(w) for w in ws]
        for i in range(0, len(x), batch):
            grads = torch.autograd.grad(loss(x[i : i + batch], y[i : i + batch]), ws, create_graph=True)
            z = sum((gi * gc).sum() for gi, gc in zip(grads, g, strict=True))
            for acc, h in zip(hg, torch.autograd.grad(z, ws), strict=True):
                acc += h
        return {k: w.detach() * h for k, w, h in zip(names, ws, hg, strict=True)}  # h has no graph


@CRITERIA.register("synflow")
def synflow(ctx: ScoreContext) -> Scores:
    """|w * dR/dw| with R = 1' (prod_l |W_l|) 1 (Tanaka et al. 2020, 'Pruning neural networks without any
    data by iteratively conserving synaptic flow'): data-free; every parameter and buffer replaced by
    its absolute value, the input all ones, the masked weights zero, BN in eval mode, in float64 (the
    product of |W| over the layers overflows float32 on deeper networks). Run iteratively (100 rounds by
    default) it avoids layer collapse. The model itself is not touched: a copy is scored.
    The guide images are read only for their shape and device.
    """
    m = copy.deepcopy(ctx.model).double().to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        for v in m.state_dict().values():
            if v.is_floating_point():
                v.abs_()
        params = prunable(m)
        for k, keep in ctx.mask.items():
            params[k].mul_(keep.to(params[k]))
    m.eval()
    x = ctx.need("guide_x")
    m(torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)).sum().backward()
    dtype = next(iter(prunable(ctx.model).values())).dtype
    return {k: (params[k].grad * params[k]).detach().abs().to(dtype) for k in ctx.mask}


_AT_INIT = dict(at_init=True, needs=Needs(guide_images=True), rewinds=("weight",),
                why_rewinds="it trains each level from the rewind point's weights, which only weight "
                            "rewinding defines")
METHODS.register("snip")(Method("snip", **_AT_INIT, paper="Lee et al. 2019", color="#bcbd22"))
METHODS.register("grasp")(Method("grasp", **_AT_INIT, paper="Wang et al. 2020", color="#17becf"))
METHODS.register("synflow")(Method("synflow", **_AT_INIT, iterative=True, paper="Tanaka et al. 2020",
                                    color="#e377c2"))
