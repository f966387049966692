"""Pruning criteria: each returns a per-weight score (higher = keep), one tensor per prunable weight.

Two families share the registry. Criteria of trained weights (magnitude, movement, the explanation
saliencies) prune a fraction of what the last level kept (IMP). Pruning-at-initialisation criteria
(SNIP, GraSP, SynFlow) score the untrained starting weights and prune from dense straight to a level's
density, in one round or (SynFlow) in many; `Method.at_init` says which family a method belongs to.

Guided methods mix two criteria with the guidance weight g:
    score = (1 - g) * normalise(base) + g * normalise(guide)
`normalise` divides by the largest alive score over all layers. It is a single positive scale per
score set, so it preserves the global ranking: g = 0 gives exactly the base criterion's mask.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lthray.masks import Mask, Scores, prunable
from lthray.modes import eval_mode
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


@contextlib.contextmanager
def _scoring_model(model: nn.Module, batch_stats: bool) -> Iterator[nn.Module]:
    """The model to differentiate. Trained models are scored in eval mode (their BN statistics are the
    network). Pruning at initialisation scores a copy in *train* mode, with batch statistics, as the
    SNIP and GraSP authors' code does: an untrained BN's running statistics (mean 0, variance 1) do not
    normalise anything, and GraSP's Hessian term depends on it (measured on Fashion-MNIST at 40%
    density, 1 epoch: GraSP masks scored in eval mode trained to 55.5%, in train mode to 71.1%; SNIP
    74.6% vs 74.5%). The copy keeps the model's BN running statistics untouched."""
    if batch_stats:
        yield copy.deepcopy(model).train()
    else:
        with eval_mode(model, clear_grads=True):
            yield model


def _saliency(ctx: ScoreContext, objective: Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor],
              x: torch.Tensor, y: torch.Tensor, batch: int = 128, batch_stats: bool = False) -> Scores:
    """|w * d objective / dw| summed over the guide images (SNIP-style first-order importance).

    The model is left as it was found (see _scoring_model for the BN mode).
    """
    with _scoring_model(ctx.model, batch_stats) as model:
        params = prunable(model)
        for i in range(0, len(x), batch):
            objective(model, x[i : i + batch], y[i : i + batch]).backward()
        return {k: (w.detach() * w.grad).abs() if w.grad is not None else torch.zeros_like(w)
                for k, w in params.items() if k in ctx.mask}


@CRITERIA.register("cam")
def cam_saliency(ctx: ScoreContext) -> Scores:
    """Importance for classifying from the evidence the *dense* model pointed at.

    |w * dL/dw| with L the cross-entropy on guide (training) images multiplied by the dense model's
    Grad-CAM maps: weights that carry the dense model's explanation score high, so mixing this in keeps
    the pruned network looking where the dense one looked. (Inputs are normalised, so x * map fades the
    unexplained regions towards the dataset mean.)
    """
    x, y, maps = ctx.extras["guide_x"], ctx.extras["guide_y"], ctx.extras["guide_maps"]
    xm = x * maps.to(x)[:, None]
    return _saliency(ctx, lambda m, xb, yb: torch.nn.functional.cross_entropy(m(xb), yb, reduction="sum"), xm, y)


@CRITERIA.register("concept")
def concept_saliency(ctx: ScoreContext) -> Scores:
    """Importance for the concepts that matter most to each class in the current PCBM.

    |w * dO/dw| with O = sum over guide images of the activations of the image's class's top-k concepts,
    weighted by their concept -> class weights.
    """
    pcbm, k = ctx.extras["pcbm"], ctx.extras["concept_topk"]
    top = torch.as_tensor(pcbm.top_concepts(k))  # (classes, k)
    coef = pcbm.coef

    def objective(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        acts = pcbm.concepts_of(m.features(xb).float())  # (B, n_concepts)
        idx = top.to(xb.device)[yb]  # (B, k)
        w = coef.to(xb.device)[yb.unsqueeze(1), idx]  # (B, k)
        return (acts.gather(1, idx) * w).sum()

    return _saliency(ctx, objective, ctx.extras["guide_x"], ctx.extras["guide_y"])


@CRITERIA.register("movement")
def movement(ctx: ScoreContext) -> Scores:
    """How far each weight moved over the last training run (from its rewind point to the end).

    Weights that barely move during training are the ones pruned first (Zhou et al. 2019's 'movement'
    masks; Sanh et al. 2020): a weight training does not change contributes what it had at the start.
    """
    start = ctx.extras["start_weights"]
    return {k: (w.detach() - start[k].to(w)).abs() for k, w in prunable(ctx.model).items() if k in ctx.mask}


def _ce_sum(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(m(xb), yb, reduction="sum")


@CRITERIA.register("snip")
def snip(ctx: ScoreContext) -> Scores:
    """|w * dL/dw| at initialisation (Lee et al. 2019, 'SNIP: single-shot network pruning'), with L the
    cross-entropy on the guide (training) images: the connection sensitivity |dL/dc| of a mask variable c."""
    return _saliency(ctx, _ce_sum, ctx.extras["guide_x"], ctx.extras["guide_y"], batch_stats=True)


GRASP_TEMPERATURE = 200.0  # Wang et al. 2020 divide the logits by T = 200 so the Hessian is not ~0 at init


@CRITERIA.register("grasp")
def grasp(ctx: ScoreContext, batch: int = 128) -> Scores:
    """w * (H g) at initialisation (Wang et al. 2020, 'Picking winning tickets before training by preserving
    gradient flow'): g = dL/dw, H the Hessian of L. The paper removes the weights with the largest
    -w * Hg, i.e. keeps the largest w * Hg, which is this score; it can be negative.

    Written here because neither torch nor a maintained library ships it: two passes, g without a graph,
    then H g as the gradient of g_const . dL/dw (one Hessian-vector product, never the Hessian itself).
    """
    x, y = ctx.extras["guide_x"], ctx.extras["guide_y"]
    with _scoring_model(ctx.model, batch_stats=True) as model:
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
    shape = ctx.extras["guide_x"].shape[1:]
    m(torch.ones((1, *shape), dtype=torch.float64, device=ctx.extras["guide_x"].device)).sum().backward()
    dtype = next(iter(prunable(ctx.model).values())).dtype
    return {k: (params[k].grad * params[k]).detach().abs().to(dtype) for k in ctx.mask}


def normalise(scores: Scores, mask: Mask) -> Scores:
    """Scores divided by the largest alive |score| across layers (monotone: rankings are unchanged)."""
    top = max((s[mask[k]].abs().max() for k, s in scores.items() if mask[k].any()), default=torch.tensor(1.0))
    top = top if float(top) > 0 else torch.ones_like(top)
    return {k: s / top for k, s in scores.items()}


def mix(base: Scores, guide: Scores, g: float, mask: Mask) -> Scores:
    """(1 - g) * normalise(base) + g * normalise(guide); g = 0 returns normalise(base) exactly.

    A layer on which the guide has no opinion (all its alive scores zero: e.g. the classifier head for
    concept saliency, whose objective stops at the features) keeps the base criterion's scores. Without
    this, global ranking would prune such a layer away first and disconnect the network.
    """
    a = normalise(base, mask)
    if g == 0:
        return a
    b = normalise(guide, mask)
    return {k: (1 - g) * a[k] + g * b[k] if bool((guide[k][mask[k]] != 0).any()) else a[k] for k in a}


@dataclass(frozen=True)
class Method:
    """A sweepable pruning method: a base criterion, optionally mixed with a guide criterion by g.

    at_init: score the level's *starting* weights (the rewind point: the initialisation at k = 0) and
        prune from dense to the level's density, instead of a fraction of the last level's mask; the
        masks of two levels need not nest. `iterative` does it in prune.pai_iterations rounds on an
        exponential density schedule (SynFlow), else in one round (SNIP, GraSP).
    reinit: the random-reinitialisation control: the ticket's masks (found by this base criterion along
        the trial's own lineage, exactly as IMP finds them), but the row measures a copy of each level
        trained from a fresh initialisation drawn with another seed.
    """

    base: str
    guide: str | None = None
    at_init: bool = False
    iterative: bool = False
    reinit: bool = False
    paper: str = field(default="", compare=False)  # shown in the README and report, not part of identity

    @property
    def needs_weight_rewind(self) -> bool:
        """Both start each level from a fresh point, which only weight rewinding defines."""
        return self.at_init or self.reinit


METHODS: Registry[Method] = Registry("method")
METHODS.register("imp")(Method("magnitude", paper="Frankle & Carbin 2019; Frankle et al. 2020"))
METHODS.register("random")(Method("random", paper="random pruning baseline (Frankle & Carbin 2019)"))
METHODS.register("cam_guided")(Method("magnitude", "cam"))
METHODS.register("concept_guided")(Method("magnitude", "concept"))
METHODS.register("stability")(Method("magnitude", "movement", paper="Zhou et al. 2019; Sanh et al. 2020"))
METHODS.register("reinit")(Method("magnitude", reinit=True, paper="Frankle & Carbin 2019, random reinitialisation"))
METHODS.register("snip")(Method("snip", at_init=True, paper="Lee et al. 2019"))
METHODS.register("grasp")(Method("grasp", at_init=True, paper="Wang et al. 2020"))
METHODS.register("synflow")(Method("synflow", at_init=True, iterative=True, paper="Tanaka et al. 2020"))


def scores_for(method: str, ctx: ScoreContext, guidance_weight: float = 0.0) -> Scores:
    """Per-weight scores of `method` at this level."""
    m = METHODS.get(method)
    base = CRITERIA.get(m.base)(ctx)
    if m.guide is None:
        return base
    guide = CRITERIA.get(m.guide)(ctx) if guidance_weight > 0 else base
    return mix(base, guide, guidance_weight, ctx.mask)
