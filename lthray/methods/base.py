"""What a pruning method is: a base criterion, optionally mixed with a guide criterion by the guidance
weight g, plus everything the level loop and the config checks must know about it.

Guided methods score
    score = (1 - g) * scale(base) + g * scale(guide)
on one of two scales (`prune.mix`), each a monotone map of a score set over all alive weights of all
layers, so that g = 0 gives exactly the base criterion's mask and g = 1 the guide's:
- `rank` (the default): each alive weight's percentile rank, in (0, 1]. Both criteria then spread
  evenly over the same interval, so g weighs their *orderings*: g = 0.5 halfway between them.
- `max`: each score divided by the largest alive score (the scale of lthray before 2026-12-05, kept
  to reproduce its studies). A heavy-tailed guide (Grad-CAM or LRP saliency: a few large scores, most
  near 0) then barely reorders the magnitude ranks at any g < 1: guided masks kept 87-95% of IMP's at
  40% density in the reference study, so "guidance does not beat IMP" was near-null by construction.

A method declares what its criteria read (`Needs`); the level loop computes exactly that and passes it
in a typed `ScoreContext`, so no stage compares method names. Adding a method is one module that
registers its criteria and its `Method` (see `lthray/methods/__init__.py` for the list).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lthray.masks import Mask, Scores
from lthray.registry import Registry

if TYPE_CHECKING:
    from lthray.explain.concepts import PCBM


class MissingInput(ValueError):
    """A criterion was called without an input its method did not declare in `Needs`."""


@dataclass(frozen=True)
class Needs:
    """What a method's criteria read besides the model and mask; the level loop computes only these."""

    guide_images: bool = False  # the fixed training images (guide_x, guide_y) the criterion scores on
    dense_cams: bool = False  # the dense model's Grad-CAM maps on the guide images (guide_maps)
    pcbm: bool = False  # the concept bottleneck fitted on the last level's backbone (needs concepts on)
    start_weights: bool = False  # the weights the last level's training began from
    dense_logits: bool = False  # the dense model's logits on the training images (imp_kd's teacher)


@dataclass(frozen=True)
class ScoreContext:
    """Everything a criterion may look at. Criteria must not modify the model.

    The optional inputs are None unless the method's `Needs` asked for them; `need(name)` reads one and
    says which declaration is missing when it is absent."""

    model: nn.Module
    mask: Mask
    seed: int  # for stochastic criteria: seeded per (trial seed, level)
    level: int
    guide_x: torch.Tensor | None = None
    guide_y: torch.Tensor | None = None
    guide_maps: torch.Tensor | None = None
    pcbm: PCBM | None = None
    concept_topk: int = 5
    start_weights: dict[str, torch.Tensor] | None = None

    def need(self, name: str) -> Any:
        value = getattr(self, name)
        if value is None:
            raise MissingInput(f"this criterion reads {name}, which its method's Needs did not ask for")
        return value


Criterion = Callable[[ScoreContext], Scores]
CRITERIA: Registry[Criterion] = Registry("criterion")


@dataclass(frozen=True)
class Method:
    """A sweepable pruning method.

    at_init: score the level's *starting* weights (the rewind point: the initialisation at k = 0) and
        prune from dense to the level's density, instead of a fraction of the last level's mask; the
        masks of two levels need not nest. `iterative` does it in prune.pai_iterations rounds on an
        exponential density schedule (SynFlow), else in one round (SNIP, GraSP).
    reinit: the random-reinitialisation control: the ticket's masks (found by this base criterion along
        the trial's own lineage, exactly as IMP finds them), but the row measures a copy of each level
        trained from a fresh initialisation drawn with another seed.
    shuffle: the layer-wise shuffled-mask control: at every level the ticket's per-layer kept counts
        (found along the trial's own lineage, as IMP finds them), at positions drawn at random within each
        layer (seeded by seed and level), trained from the same rewind point on the same schedule; the row
        and its mask file describe that network. Does a ticket's *where* matter beyond its per-layer
        allocation? (Frankle et al. 2021, Su et al. 2020.)
    retrain: a mask-fixed arm (issue "explanation- vs function-preserving retraining"): the trial follows
        IMP's own lineage, trained with cross-entropy alone, but the row measures a copy of each level
        retrained from that level's start under IMP's mask with one extra loss: 'fid' adds prune.lambda_fid x
        the Grad-CAM fidelity to the dense maps on the guide images, 'kd' adds prune.kd_weight x the
        distillation to the dense logits on every training batch. Only the loss differs from IMP's row of the
        same seed and level.
    rewinds: the prune.rewind modes it allows (None: every registered one).
    """

    base: str
    guide: str | None = None
    needs: Needs = Needs()
    at_init: bool = False
    iterative: bool = False
    reinit: bool = False
    shuffle: bool = False
    retrain: str = ""
    rewinds: tuple[str, ...] | None = None
    why_rewinds: str = ""  # the reason shown when another rewind is asked for
    paper: str = field(default="", compare=False)  # shown in the README and report, not part of identity
    color: str = field(default="", compare=False)  # its colour in every chart of every report (analysis.colors)

    @property
    def measures_copy(self) -> bool:
        """Its pruned rows measure a retrained copy (a control's or an arm's), not the lineage: their weights
        are not the row's network, so none are kept as a ticket."""
        return self.reinit or self.shuffle or bool(self.retrain)

    @property
    def guided(self) -> bool:
        """Mixes an explanation (or other) guide into its base criterion by the guidance weight."""
        return self.guide is not None

    def problems(self, flat: dict[str, Any]) -> list[tuple[str, Any, str]]:
        """Config values this method cannot run with: (key, value, what is allowed) each.
        `flat` is the trial's flat config (lthray.config.to_flat), so this module needs no config import."""
        out = []
        if self.rewinds is not None and flat["prune.rewind"] not in self.rewinds:
            allowed = " or ".join(repr(r) for r in self.rewinds)
            out.append(("prune.rewind", flat["prune.rewind"],
                        f"{allowed} with prune.method={flat['prune.method']!r} ({self.why_rewinds})"))
        method = flat["prune.method"]
        if self.retrain == "fid" and flat["prune.lambda_fid"] <= 0:
            out.append(("prune.lambda_fid", flat["prune.lambda_fid"], f"> 0 with prune.method={method!r} (its arm "
                        "is the fidelity loss)"))
        if self.retrain == "kd" and flat["prune.kd_weight"] <= 0:
            out.append(("prune.kd_weight", flat["prune.kd_weight"], f"> 0 with prune.method={method!r} (its arm is "
                        "the distillation loss)"))
        if self.retrain == "kd" and flat["prune.lambda_fid"] > 0:
            out.append(("prune.lambda_fid", flat["prune.lambda_fid"], f"0 with prune.method={method!r} (its arm "
                        "is distillation alone; imp_fid is the fidelity arm)"))
        if self.retrain != "kd" and flat["prune.kd_weight"] > 0:
            out.append(("prune.kd_weight", flat["prune.kd_weight"], f"0 with prune.method={method!r} (distillation "
                        "is the imp_kd arm's loss)"))
        if self.needs.pcbm and not flat["concepts.enabled"]:
            out.append(("concepts.enabled", False,
                        f"true with prune.method={flat['prune.method']!r} (it scores weights by the PCBM's concepts)"))
        return out


METHODS: Registry[Method] = Registry("method")


def normalise(scores: Scores, mask: Mask) -> Scores:
    """Scores divided by the largest alive |score| across layers (monotone: rankings are unchanged)."""
    top = max((s[mask[k]].abs().max() for k, s in scores.items() if mask[k].any()), default=torch.tensor(1.0))
    top = top if float(top) > 0 else torch.ones_like(top)
    return {k: s / top for k, s in scores.items()}


def percentile(scores: Scores, mask: Mask) -> Scores:
    """Each alive weight's rank among the alive weights of all layers divided by their number, in (0, 1]
    (float64; ties share their average rank, scipy's `rankdata`); a pruned weight scores 0. Monotone in
    the scores, so it keeps the global ranking and every layer's own."""
    from scipy.stats import rankdata  # only guided scoring needs scipy here

    names = list(scores)
    alive = torch.cat([scores[k].detach()[mask[k]].double().flatten().cpu() for k in names])
    ranks = torch.from_numpy(rankdata(alive.numpy(), method="average")) / max(len(alive), 1)
    out, i = {}, 0
    for k in names:
        n, o = int(mask[k].sum()), torch.zeros(scores[k].shape, dtype=torch.float64, device=scores[k].device)
        o[mask[k]] = ranks[i : i + n].to(o.device)
        out[k], i = o, i + n
    return out


MIX_SCALES: dict[str, Callable[[Scores, Mask], Scores]] = {"rank": percentile, "max": normalise}


def mix(base: Scores, guide: Scores, g: float, mask: Mask, scale: str = "rank") -> Scores:
    """(1 - g) * scale(base) + g * scale(guide), `scale` one of MIX_SCALES; g = 0 returns scale(base),
    which ranks the weights exactly as `base` does.

    A layer on which the guide has no opinion (all its alive scores zero: e.g. the classifier head for
    concept saliency, whose objective stops at the features) keeps the base criterion's scores. Without
    this, global ranking would prune such a layer away first and disconnect the network.
    """
    a = MIX_SCALES[scale](base, mask)
    if g == 0:
        return a
    b = MIX_SCALES[scale](guide, mask)
    return {k: (1 - g) * a[k] + g * b[k] if bool((guide[k][mask[k]] != 0).any()) else a[k] for k in a}


def scores_for(method: str, ctx: ScoreContext, guidance_weight: float = 0.0, scale: str = "rank") -> Scores:
    """Per-weight scores of `method` at this level (a guided one's mixed on `scale`, MIX_SCALES)."""
    m = METHODS.get(method)
    base = CRITERIA.get(m.base)(ctx)
    if m.guide is None:
        return base
    guide = CRITERIA.get(m.guide)(ctx) if guidance_weight > 0 else base
    return mix(base, guide, guidance_weight, ctx.mask, scale)


def names(*, guided: bool | None = None, at_init: bool | None = None, reinit: bool | None = None,
          shuffle: bool | None = None) -> list[str]:
    """Registered method names (sorted) with the given kinds; None = either."""
    def fits(m: Method) -> bool:
        return all(want is None or have == want for want, have in
                   ((guided, m.guided), (at_init, m.at_init), (reinit, m.reinit), (shuffle, m.shuffle)))
    return [n for n in METHODS if fits(METHODS.get(n))]


def is_guided(method: str) -> bool:
    """Whether `method` mixes a guide score into magnitude; a name this lthray does not know (rows of a
    plugin's method read without the plugin) is not counted as guided."""
    return method in METHODS and METHODS.get(method).guided
