"""The steps of one level (open_lth style), each a function of the trial, its state and the level:

    level 0: train (saving the rewind point at step k) -> measure (its maps become the reference)
    level L: next_mask (prune the last level's weights, or prune_at_init) -> rewind (REWINDS)
             -> train the lineage under the mask -> measure the network the row describes (the lineage,
             or a control's or retraining arm's copy) [-> the instability analysis's second copy]

The method's `Needs` decide what is computed for its criteria (no step compares method names). Words:
`began_from` is the weights a level's training started from; a `Schedule`'s start is a step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lthray import data as data_mod
from lthray import instability, masks, schedule, weights
from lthray.data import Salt
from lthray.explain.cam import fidelity_loss
from lthray.methods import CRITERIA, scores_for
from lthray.models import build
from lthray.rewind import REWINDS
from lthray.schedule import Schedule
from lthray.train import Distill, TrainResult, train
from lthray.trial.measure import Measurement, measure
from lthray.trial.setup import Trial, Weights, context, state_cpu
from lthray.trial.state import TrialState


def prune(trial: Trial, state: TrialState, level: int) -> masks.Mask:
    """Score the previous level's trained weights (the model holds them) and remove a fraction."""
    cfg = trial.cfg
    ctx = context(trial, state, level, state.mask)
    scores = scores_for(cfg.prune.method, ctx, cfg.prune.guidance_weight, cfg.prune.mix)
    if cfg.prune.target_density is not None:  # a declared end point: every level's density exact
        return masks.prune_to(scores, ctx.mask, cfg.prune.density_at(level), cfg.prune.scope)
    return masks.prune(scores, ctx.mask, cfg.prune.rate_per_level, cfg.prune.scope)


def prune_at_init(trial: Trial, state: TrialState, level: int) -> masks.Mask:
    """Pruning at initialisation: score the level's starting weights (the rewind point; the
    initialisation when k = 0) and prune from dense to the level's nominal density, in one round or, for
    an iterative method, in prune.pai_iterations rounds on the exponential schedule density^(r/R) of
    Tanaka et al. 2020, rescoring the surviving weights each round. Leaves the model at the rewind point."""
    cfg = trial.cfg
    trial.model.load_state_dict(state.rewind)
    criterion, target = CRITERIA.get(trial.method.base), cfg.prune.density_at(level)
    rounds = cfg.prune.pai_iterations if trial.method.iterative else 1
    ctx = context(trial, state, level, masks.ones(trial.model))  # built once: only the mask changes between rounds
    for r in range(1, rounds + 1):
        mask = masks.prune(criterion(ctx), ctx.mask, masks.fraction_to(ctx.mask, target ** (r / rounds)),
                           cfg.prune.scope)
        ctx = dataclasses.replace(ctx, mask=mask)
    return ctx.mask


def next_mask(trial: Trial, state: TrialState, level: int) -> masks.Mask:
    """The mask of pruned level `level` (the model holds the previous level's trained weights)."""
    return prune_at_init(trial, state, level) if trial.method.at_init else prune(trial, state, level)


def schedule_of(trial: Trial, state: TrialState, level: int) -> Schedule:
    """The level's training schedule; a pruned level's rewind sets the model's starting weights."""
    if level == 0:
        return schedule.dense(trial.cfg)
    return REWINDS.get(trial.cfg.prune.rewind)(trial.model, state.rewind, trial.cfg)


def begin(trial: Trial, state: TrialState, level: int) -> tuple[masks.Mask, Schedule]:
    """Load the level's starting weights into the model and return its mask and schedule."""
    if level == 0:
        return masks.ones(trial.model), schedule_of(trial, state, level)
    trial.model.load_state_dict(state.weights)  # the last level's lineage: what the method prunes
    mask = next_mask(trial, state, level)
    return mask, schedule_of(trial, state, level)


def fidelity_term(trial: Trial, guide_maps: torch.Tensor) -> Callable[[torch.nn.Module], torch.Tensor]:
    """Explanation-preserving retraining: lambda_fid * (1 - cos(CAM, dense CAM)) on a rotating slice of
    the guide (training) images; test images never steer training."""
    maps, n, lam = guide_maps.to(trial.guide_x.device), trial.cfg.explain.fid_batch, trial.cfg.prune.lambda_fid
    calls = [0]

    def term(model: torch.nn.Module) -> torch.Tensor:
        i = (calls[0] * n) % len(trial.guide_x)
        calls[0] += 1
        sl = slice(i, i + n)
        return lam * fidelity_loss(model, model.cam_layer, trial.guide_x[sl], trial.guide_y[sl], maps[sl])

    return term


def extra_terms(trial: Trial, state: TrialState, level: int,
                arm: bool) -> tuple[Callable[[torch.nn.Module], torch.Tensor] | None, Distill | None]:
    """The losses added to cross-entropy when training level `level`: the fidelity term of prune.lambda_fid
    for an ordinary method's lineage; for a retraining arm (Method.retrain) nothing on its lineage (IMP's)
    and its own term on the measured copy (`arm`): 'fid' the fidelity term, 'kd' distillation to the
    dense model's logits. The dense model (level 0) trains with cross-entropy alone."""
    retrain, cfg = trial.method.retrain, trial.cfg.prune
    if level == 0 or (retrain and not arm):
        return None, None
    if retrain == "kd":
        assert state.teacher_logits is not None  # computed at level 0 whenever the method needs them
        return None, Distill(state.teacher_logits.to(trial.data.train_x.device), cfg.kd_weight, cfg.kd_temperature)
    if retrain == "fid" or cfg.lambda_fid > 0:
        assert state.guide_maps is not None  # computed at level 0 whenever lambda_fid > 0
        return fidelity_term(trial, state.guide_maps), None
    return None, None


def train_level(trial: Trial, state: TrialState, level: int, mask: masks.Mask, sched: Schedule,
                on_step: Callable[[int], None] | None = None, data_seed: int | None = None,
                arm: bool = False) -> TrainResult:
    """Train the schedule under `mask` with the level's extra losses (`extra_terms`; `arm`: a retraining
    arm's measured copy); raises Diverged. `data_seed` replaces the trial's seed for the data order and
    augmentation (a second copy)."""
    extra, distill = extra_terms(trial, state, level, arm)
    seed = trial.cfg.seed if data_seed is None else data_seed
    return train(trial.model, trial.data, trial.cfg.train, mask=mask, start=sched.start, end=sched.end,
                 seed=seed, constant_lr=sched.constant_lr, on_step=on_step, extra_loss=extra, distill=distill)


@dataclass(frozen=True)
class Trained:
    """A level's lineage training: where it began, what it reached, level 0's rewind points (step ->
    weights), and its seconds."""

    began_from: Weights
    lineage: Weights
    rewinds: dict[int, Weights]
    seconds: float


def train_lineage(trial: Trial, state: TrialState, level: int, mask: masks.Mask, sched: Schedule,
                  rewind_points: tuple[int, ...] = ()) -> Trained:
    """Train the lineage of level `level` from the model's weights (see `begin`); raises Diverged. Level 0
    saves the weights at the trial's rewind point k and at every step of `rewind_points` (the points the
    other trials of a sweep rewind to, so the dense level trains once for all of them)."""
    began_from, saved = state_cpu(trial.model), {}
    wanted = {schedule.rewind_steps(trial.cfg), *rewind_points} if level == 0 else set()

    def keep_rewind_points(step: int) -> None:
        if step in wanted:
            saved[step] = state_cpu(trial.model)

    seconds = train_level(trial, state, level, mask, sched, keep_rewind_points if level == 0 else None).seconds
    return Trained(began_from, state_cpu(trial.model), saved, seconds)


def fresh_init(trial: Trial, level: int) -> Weights:
    """The random-reinitialisation control (Frankle & Carbin 2019): a fresh initialisation drawn with
    another seed (one per level), to be trained under the ticket's mask on the ticket's schedule."""
    cfg = trial.cfg
    seed = data_mod.step_seed(cfg.seed, Salt.REINIT, level)
    return state_cpu(build(cfg.model.name, trial.data.spec.num_classes, seed, trial.data.spec.channels,
                           trial.data.train_x.dtype))


def measured_mask(trial: Trial, level: int, mask: masks.Mask) -> masks.Mask:
    """The mask of the network a level's row describes: the lineage's, or for the shuffled-mask control
    the lineage's shuffled within each layer (a pure function of the trial seed and level, so a reused
    level publishes the same mask file without storing it)."""
    if not (trial.method.shuffle and level > 0):
        return mask
    return masks.shuffle_within_layers(mask, data_mod.step_seed(trial.cfg.seed, Salt.SHUFFLE, level))


def second_copy(trial: Trial, state: TrialState, level: int, mask: masks.Mask, began_from: Weights,
                sched: Schedule) -> tuple[Weights, float]:
    """A second copy of the measured network: trained from `began_from` under the same mask and schedule
    with another data order (one seed per level). The instability analysis and the same-initialisation
    floor share it. Returns its weights and training seconds; the model holds it."""
    trial.model.load_state_dict(began_from)
    seed = data_mod.step_seed(trial.cfg.seed, Salt.INSTABILITY_COPY, level)
    seconds = train_level(trial, state, level, mask, sched, data_seed=seed, arm=bool(trial.method.retrain)).seconds
    return state_cpu(trial.model), seconds


# The columns a same-initialisation copy gives the floor of (`floor_` + name in LevelRecord).
FLOOR_COLUMNS = ("test_acc", "pred_agreement", "pred_kl", "cam_spearman", "cam_iou", "lrp_spearman",
                 "occlusion_spearman",
                 "cam_spearman_same_pred", "lrp_spearman_same_pred", "concept_topk_overlap", "concept_weight_spearman")


def floor_columns(trial: Trial, state: TrialState, dense: Measurement, copy: Weights) -> dict[str, Any]:
    """The same-initialisation noise floor of level 0: the dense model's second copy (same initialisation
    and rewind point, another data order) measured against the dense model's references exactly as a
    pruned level is. A ticket rewound to k shares its dense model's first k steps; this copy shares them
    too, so it is the null for "pruning changed the maps" that the seed-to-seed floor is not."""
    refs = dataclasses.replace(
        state, dense_maps=torch.from_numpy(np.ascontiguousarray(dense.maps)),
        dense_lrp=None if dense.lrp is None else torch.from_numpy(dense.lrp),
        dense_occlusion=None if dense.occlusion is None else torch.from_numpy(dense.occlusion),
        dense_pcbm=dense.concepts.pcbm if dense.concepts is not None else {}, dense_log_probs=dense.log_probs)
    trial.model.load_state_dict(copy)
    cols = measure(trial, refs, 1).cols  # level 1: measured as any later level is, against level 0's references
    return {f"floor_{k}": cols.get(k) for k in FLOOR_COLUMNS}


def instability_columns(trial: Trial, own: Weights, other: Weights) -> dict[str, Any]:
    """The test error along the straight line between the measured network (`own`) and its second copy."""
    errors = instability.error_path(trial.model, own, other, trial.data, trial.cfg.instability,
                                    batch_size=trial.cfg.train.batch_size, seed=trial.cfg.seed)
    return {"instability_barrier": instability.barrier(errors), "instability_errors": errors}


def measure_level(trial: Trial, state: TrialState, level: int, mask: masks.Mask, sched: Schedule,
                  tr: Trained) -> tuple[dict[str, Any], Measurement]:
    """Measure the network level `level`'s row describes (the model holds `tr.lineage`): the lineage; for
    the reinit control a freshly initialised copy trained under the same mask and schedule; for the
    shuffled-mask control a copy trained from the lineage's start under its mask shuffled within each
    layer (`measured_mask`); for a retraining arm a copy trained from the lineage's start under the same
    mask with the arm's loss (`extra_terms`); plus, from one second copy (`second_copy`), the same-initialisation
    floor at
    level 0 (explain.same_init_floor) and the instability analysis when enabled. Returns the columns
    (train_seconds: the training done here) and the measurement; the model holds the lineage again.
    Raises Diverged (a control copy's training)."""
    cfg = trial.cfg
    # Where the measured network's training began: a second copy starts there (at level 0 that is the
    # rewind point k, and it trains from k).
    measured_from = tr.rewinds[schedule.rewind_steps(cfg)] if level == 0 else tr.began_from
    trained_from = tr.began_from  # where the measured network's own training began (level 0: the initialisation)
    if level == 0:
        sched = schedule.from_rewind(cfg)
    seconds = 0.0
    if trial.method.measures_copy and level > 0:
        measured_from = trained_from = fresh_init(trial, level) if trial.method.reinit else tr.began_from
        mask = measured_mask(trial, level, mask)
        trial.model.load_state_dict(measured_from)
        seconds += train_level(trial, state, level, mask, sched, arm=bool(trial.method.retrain)).seconds
    m = measure(trial, state, level)  # of the network the model holds: the lineage, or a control's copy
    cols = {**m.cols, **weights.columns(trial.model, trained_from, mask)}
    floor = level == 0 and cfg.explain.same_init_floor
    if floor or cfg.instability.enabled:
        t0, own = time.perf_counter(), state_cpu(trial.model)
        copy, copy_seconds = second_copy(trial, state, level, mask, measured_from, sched)
        more = {**(floor_columns(trial, state, m, copy) if floor else {}),
                **(instability_columns(trial, own, copy) if cfg.instability.enabled else {})}
        seconds += copy_seconds
        cols = {**cols, **more, "explain_seconds": cols["explain_seconds"] + time.perf_counter() - t0 - copy_seconds}
    trial.model.load_state_dict(tr.lineage)
    return {**cols, "train_seconds": seconds}, m
