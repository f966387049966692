"""The steps of one level (open_lth style), each a function of the trial, its state and the level:

    level 0: train (saving the rewind point at step k) -> measure (its maps become the reference)
    level L: next_mask (prune the last level's weights, or prune_at_init) -> rewind (REWINDS)
             -> train the lineage under the mask -> measure the network the row describes (the lineage,
             or the reinit control's fresh copy) [-> the instability analysis's second copy]

The method's `Needs` decide what is computed for its criteria (no step compares method names). Words:
`began_from` is the weights a level's training started from; a `Schedule`'s start is a step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from lthray import data as data_mod
from lthray import instability, masks, schedule
from lthray.data import Salt
from lthray.explain.cam import fidelity_loss
from lthray.methods import CRITERIA, scores_for
from lthray.models import build
from lthray.rewind import REWINDS
from lthray.schedule import Schedule
from lthray.train import TrainResult, train
from lthray.trial.measure import Measurement, measure
from lthray.trial.setup import Trial, Weights, context, state_cpu
from lthray.trial.state import TrialState


def prune(t: Trial, st: TrialState, level: int) -> masks.Mask:
    """Score the previous level's trained weights (the model holds them) and remove a fraction."""
    cfg = t.cfg
    ctx = context(t, st, level, st.mask)
    scores = scores_for(cfg.prune.method, ctx, cfg.prune.guidance_weight)
    if cfg.prune.target_density is not None:  # a declared end point: every level's density exact
        return masks.prune_to(scores, ctx.mask, cfg.prune.density_at(level), cfg.prune.scope)
    return masks.prune(scores, ctx.mask, cfg.prune.rate_per_level, cfg.prune.scope)


def prune_at_init(t: Trial, st: TrialState, level: int) -> masks.Mask:
    """Pruning at initialisation: score the level's starting weights (the rewind point; the
    initialisation when k = 0) and prune from dense to the level's nominal density, in one round or, for
    an iterative method, in prune.pai_iterations rounds on the exponential schedule density^(r/R) of
    Tanaka et al. 2020, rescoring the surviving weights each round. Leaves the model at the rewind point."""
    cfg = t.cfg
    t.model.load_state_dict(st.rewind)
    criterion, target = CRITERIA.get(t.method.base), cfg.prune.density_at(level)
    rounds = cfg.prune.pai_iterations if t.method.iterative else 1
    ctx = context(t, st, level, masks.ones(t.model))  # built once: only the mask changes between rounds
    for r in range(1, rounds + 1):
        mask = masks.prune(criterion(ctx), ctx.mask, masks.fraction_to(ctx.mask, target ** (r / rounds)),
                           cfg.prune.scope)
        ctx = dataclasses.replace(ctx, mask=mask)
    return ctx.mask


def next_mask(t: Trial, st: TrialState, level: int) -> masks.Mask:
    """The mask of pruned level `level` (the model holds the previous level's trained weights)."""
    return prune_at_init(t, st, level) if t.method.at_init else prune(t, st, level)


def schedule_of(t: Trial, st: TrialState, level: int) -> Schedule:
    """The level's training schedule; a pruned level's rewind sets the model's starting weights."""
    if level == 0:
        return schedule.dense(t.cfg)
    return REWINDS.get(t.cfg.prune.rewind)(t.model, st.rewind, t.cfg)


def begin(t: Trial, st: TrialState, level: int) -> tuple[masks.Mask, Schedule]:
    """Load the level's starting weights into the model and return its mask and schedule."""
    if level == 0:
        return masks.ones(t.model), schedule_of(t, st, level)
    t.model.load_state_dict(st.weights)  # the last level's lineage: what the method prunes
    mask = next_mask(t, st, level)
    return mask, schedule_of(t, st, level)


def fidelity_term(t: Trial, guide_maps: torch.Tensor) -> Callable[[torch.nn.Module], torch.Tensor]:
    """Explanation-preserving retraining: lambda_fid * (1 - cos(CAM, dense CAM)) on a rotating slice of
    the guide (training) images; test images never steer training."""
    maps, n, lam = guide_maps.to(t.guide_x.device), t.cfg.explain.fid_batch, t.cfg.prune.lambda_fid
    calls = [0]

    def term(model: torch.nn.Module) -> torch.Tensor:
        i = (calls[0] * n) % len(t.guide_x)
        calls[0] += 1
        sl = slice(i, i + n)
        return lam * fidelity_loss(model, model.cam_layer, t.guide_x[sl], t.guide_y[sl], maps[sl])

    return term


def train_level(t: Trial, st: TrialState, level: int, mask: masks.Mask, sched: Schedule,
                on_step: Callable[[int], None] | None = None, data_seed: int | None = None) -> TrainResult:
    """Train the schedule under `mask` (with the fidelity loss on pruned levels); raises Diverged.
    `data_seed` replaces the trial's seed for the data order and augmentation (a second copy)."""
    extra = None
    if t.cfg.prune.lambda_fid > 0 and level > 0:
        assert st.guide_maps is not None  # computed at level 0 whenever lambda_fid > 0
        extra = fidelity_term(t, st.guide_maps)
    seed = t.cfg.seed if data_seed is None else data_seed
    return train(t.model, t.data, t.cfg.train, mask=mask, start=sched.start, end=sched.end,
                 seed=seed, constant_lr=sched.constant_lr, on_step=on_step, extra_loss=extra)


@dataclass(frozen=True)
class Trained:
    """A level's lineage training: where it began, what it reached, level 0's rewind points (step ->
    weights), and its seconds."""

    began_from: Weights
    lineage: Weights
    rewinds: dict[int, Weights]
    seconds: float


def train_lineage(t: Trial, st: TrialState, level: int, mask: masks.Mask, sched: Schedule,
                  rewind_points: tuple[int, ...] = ()) -> Trained:
    """Train the lineage of level `level` from the model's weights (see `begin`); raises Diverged. Level 0
    saves the weights at the trial's rewind point k and at every step of `rewind_points` (the points the
    other trials of a sweep rewind to, so the dense level trains once for all of them)."""
    began_from, saved = state_cpu(t.model), {}
    wanted = {schedule.rewind_steps(t.cfg), *rewind_points} if level == 0 else set()

    def keep_rewind_points(step: int) -> None:
        if step in wanted:
            saved[step] = state_cpu(t.model)

    seconds = train_level(t, st, level, mask, sched, keep_rewind_points if level == 0 else None).seconds
    return Trained(began_from, state_cpu(t.model), saved, seconds)


def fresh_init(t: Trial, level: int) -> Weights:
    """The random-reinitialisation control (Frankle & Carbin 2019): a fresh initialisation drawn with
    another seed (one per level), to be trained under the ticket's mask on the ticket's schedule."""
    cfg = t.cfg
    return state_cpu(build(cfg.model.name, t.data.spec.num_classes, data_mod.step_seed(cfg.seed, Salt.REINIT, level),
                           t.data.spec.channels, t.data.train_x.dtype))


def instability_columns(t: Trial, st: TrialState, level: int, mask: masks.Mask, began_from: Weights,
                        sched: Schedule) -> tuple[dict[str, Any], float]:
    """Train a second copy of the measured network (the model holds it) from `began_from` under the same
    mask and schedule with another data order, then measure the test error along the line between the
    two copies. Returns the columns and the copy's training seconds; the model holds the first copy again."""
    own = state_cpu(t.model)
    t.model.load_state_dict(began_from)
    seed = data_mod.step_seed(t.cfg.seed, Salt.INSTABILITY_COPY, level)
    tr = train_level(t, st, level, mask, sched, data_seed=seed)
    other = state_cpu(t.model)
    errors = instability.error_path(t.model, own, other, t.data, t.cfg.instability,
                                    batch_size=t.cfg.train.batch_size, seed=t.cfg.seed)
    return {"instability_barrier": instability.barrier(errors), "instability_errors": errors}, tr.seconds


def measure_level(t: Trial, st: TrialState, level: int, mask: masks.Mask, sched: Schedule,
                  tr: Trained) -> tuple[dict[str, Any], Measurement]:
    """Measure the network level `level`'s row describes (the model holds `tr.lineage`): the lineage, or
    for the reinit control a freshly initialised copy trained under the same mask and schedule; plus the
    instability analysis when enabled. Returns the columns (train_seconds: the training done here) and the
    measurement; the model holds the lineage again. Raises Diverged (the reinit copy's training)."""
    cfg = t.cfg
    # Where the measured network's training began: copy 2 of the instability analysis starts there (at
    # level 0 that is the rewind point k, and it trains from k).
    measured_from = tr.rewinds[schedule.rewind_steps(cfg)] if level == 0 else tr.began_from
    if level == 0:
        sched = schedule.from_rewind(cfg)
    seconds = 0.0
    if t.method.reinit and level > 0:
        measured_from = fresh_init(t, level)
        t.model.load_state_dict(measured_from)
        seconds += train_level(t, st, level, mask, sched).seconds
    m = measure(t, st, level)  # of the network the model holds: the lineage, or the reinit copy
    cols = m.cols
    if cfg.instability.enabled:
        t0 = time.perf_counter()
        more, copy_seconds = instability_columns(t, st, level, mask, measured_from, sched)
        seconds += copy_seconds
        cols = {**cols, **more, "explain_seconds": cols["explain_seconds"] + time.perf_counter() - t0 - copy_seconds}
    t.model.load_state_dict(tr.lineage)
    return {**cols, "train_seconds": seconds}, m
