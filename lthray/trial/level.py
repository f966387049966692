"""One level, one path: the lineage (mask and trained weights), then the measurement of the network the
row describes, each taken from the cache when another trial computed it, else computed here and put
there. Without sharing the cache is `NoCache`, which never has an entry: the same steps run either way.

A lineage trained here is measured here too: a stored measurement was made of the stored lineage, which
another machine's floats may have made differently. A row's train_seconds and explain_seconds count this
trial's own work only (0 for what it reused).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from lthray import masks, schedule
from lthray.config import run_id
from lthray.explain.cam import gradcam
from lthray.schedule import Schedule
from lthray.train import Diverged
from lthray.trial.cache import LevelCache, Lineage, Measured, NoCache, lineage_key, measured_key
from lthray.trial.measure import Concepts, Measurement
from lthray.trial.measure import teacher_logits as teacher_logits_of
from lthray.trial.setup import Trial, Weights, state_cpu
from lthray.trial.state import TrialState
from lthray.trial.steps import Trained, begin, measure_level, schedule_of, train_lineage

Cache = LevelCache | NoCache


@dataclass(frozen=True)
class Level:
    """What one level computed: its mask and steps, its lineage, its row's columns and what the state
    keeps of it. `measurement` is None when the level diverged; `shared_from` names the run_id whose
    stored level it reused (None: computed here)."""

    level: int
    mask: masks.Mask
    train_steps: int
    began_from: Weights  # the lineage's weights when its training began
    lineage: Weights  # the lineage's trained weights: the next level prunes these
    cols: dict[str, Any] = field(default_factory=dict)  # the row's metric and timing columns
    measurement: Measurement | None = None
    rewinds: dict[int, Weights] = field(default_factory=dict)  # level 0: every rewind point saved
    rewind: Weights | None = None  # level 0: the trial's own rewind point
    shared_from: str | None = None


@dataclass(frozen=True)
class Got:
    """A cache entry as this trial has it: the entry, whether this trial computed it, and the run_id it
    came from otherwise."""

    entry: Any
    computed: bool
    source: str | None


def lineage_of(trial: Trial, state: TrialState, level: int, cache: Cache,
               rewind_points: tuple[int, ...]) -> tuple[Got, masks.Mask, Schedule | None, float]:
    """The level's lineage (from the cache, or trained here and put there), its mask on the device, its
    schedule (None when it diverged) and this trial's training seconds."""
    key, k = lineage_key(trial.cfg, level), schedule.rewind_steps(trial.cfg)
    with cache.claim("lineage", key):
        lin = cache.get("lineage", key)
        if lin is not None and level == 0 and k not in lin.rewinds:
            lin = None  # its producer did not save this trial's rewind point: train it here
        if lin is not None:  # the mask is stored: no pruning again (the rewind sets the model's weights)
            sched = None if lin.diverged else schedule_of(trial, state, level)
            return Got(lin, False, lin.source), {n: v.to(trial.device) for n, v in lin.mask.items()}, sched, 0.0
        mask, sched = begin(trial, state, level)
        steps, rid = sched.end - sched.start, run_id(trial.cfg)
        try:
            tr = train_lineage(trial, state, level, mask, sched, rewind_points)
        except Diverged:
            lin, sched, seconds = Lineage(mask, {}, {}, train_steps=steps, diverged=True, source=rid), None, 0.0
        else:
            lin, seconds = Lineage(mask, tr.began_from, tr.lineage, tr.rewinds, steps, source=rid), tr.seconds
        cache.put("lineage", key, lin)
        return Got(lin, True, None), mask, sched, seconds


def measured_of(trial: Trial, state: TrialState, level: int, cache: Cache, lin: Got, mask: masks.Mask,
                sched: Schedule) -> tuple[Got, float, float]:
    """The level's measurement (reused only with a reused lineage) and this trial's own training and
    explain seconds for it; its cols are empty when the reinit copy's training diverged. The model holds
    the lineage on return."""
    key, lineage = measured_key(trial.cfg, level), lin.entry
    with cache.claim("measured", key):
        me = cache.get("measured", key) if not lin.computed else None
        if me is not None:
            return Got(me, False, me.source), 0.0, 0.0
        trial.model.load_state_dict(lineage.lineage)
        trained = Trained(lineage.began_from, lineage.lineage, lineage.rewinds, 0.0)
        try:
            cols, m = measure_level(trial, state, level, mask, sched, trained)
        except Diverged:  # the reinit copy's training
            me, seconds = Measured({}, source=run_id(trial.cfg)), (0.0, 0.0)
            trial.model.load_state_dict(lineage.lineage)
        else:
            me = Measured(cols, m.maps, m.lrp, m.guide_maps, m.concepts.pcbm if m.concepts else {},
                          m.log_probs, source=run_id(trial.cfg), teacher_logits=m.teacher_logits, occlusion=m.occlusion)
            seconds = (cols["train_seconds"], cols["explain_seconds"])
        cache.put("measured", key, me)
        return Got(me, True, lin.source), *seconds


def run_level(trial: Trial, state: TrialState, level: int, cache: Cache, rewind_points: tuple[int, ...] = ()) -> Level:
    """Level `level`: the lineage, then the measurement, each from the cache or computed (and cached)
    here. The model holds the lineage on return (its last weights when the lineage diverged)."""
    lin, mask, sched, own_train = lineage_of(trial, state, level, cache, rewind_points)
    if sched is None:
        return Level(level, mask, lin.entry.train_steps, {}, state_cpu(trial.model), shared_from=lin.source)
    got, train_seconds, explain_seconds = measured_of(trial, state, level, cache, lin, mask, sched)
    me, lineage = got.entry, lin.entry
    trial.model.load_state_dict(lineage.lineage)
    if not me.cols:
        return Level(level, mask, lineage.train_steps, {}, state_cpu(trial.model), shared_from=got.source)
    guide_maps = me.guide_maps
    if level == 0 and trial.needs_guide_maps and guide_maps is None:  # its producer's method did not read them
        guide_maps = torch.from_numpy(gradcam(trial.model, trial.model.cam_layer, trial.guide_x, trial.guide_y))
    logits = me.teacher_logits
    if level == 0 and trial.needs_teacher_logits and logits is None:  # likewise
        logits = teacher_logits_of(trial)
    m = Measurement(me.cols, me.maps, me.lrp, guide_maps, Concepts(me.pcbm, {}) if me.pcbm else None, me.log_probs,
                    logits, me.occlusion)
    reused = got.source is not None and got.source == me.source  # its parts took this trial no time
    cols = {**me.cols, **({c: 0.0 for c in me.cols if c.endswith("_seconds")} if reused else {}),
            "train_seconds": own_train + train_seconds, "explain_seconds": explain_seconds}
    k = schedule.rewind_steps(trial.cfg)
    return Level(level, mask, lineage.train_steps, lineage.began_from, lineage.lineage, cols, m, lineage.rewinds,
                 lineage.rewinds.get(k) if level == 0 else None, got.source)
