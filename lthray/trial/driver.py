"""The driver of one trial: every level in turn (`level.run_level`), each published once (its mask
file, then its row), then checkpointed. A level the checkpoint records is skipped, so re-running a trial
(after a crash, or in a resumed sweep) continues from its last finished level and never trains a
finished level again."""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lthray import mask_files, masks, results, tickets, validate
from lthray.config import TrialConfig, run_id
from lthray.results import LevelRecord
from lthray.trial.cache import LevelCache, NoCache
from lthray.trial.level import Level, run_level
from lthray.trial.setup import Weights, default_device, setup
from lthray.trial.state import STATE, TrialState, check_masks, resume_state
from lthray.trial.steps import measured_mask


def advance(state: TrialState, done: Level) -> TrialState:
    """The trial's state after level `done`: the one place it changes."""
    m = done.measurement
    con = m.concepts if m is not None else None
    first = done.level == 0 and m is not None
    return dataclasses.replace(
        state, level=done.level, mask={n: v.cpu() for n, v in done.mask.items()}, weights=done.lineage,
        began_from=done.began_from, diverged=m is None,
        rewind=done.rewind if done.rewind is not None else state.rewind,
        dense_maps=torch.from_numpy(np.ascontiguousarray(m.maps)) if first else state.dense_maps,
        dense_lrp=torch.from_numpy(m.lrp) if first and m.lrp is not None else state.dense_lrp,
        dense_occlusion=torch.from_numpy(m.occlusion) if first and m.occlusion is not None else state.dense_occlusion,
        guide_maps=m.guide_maps if first else state.guide_maps,
        teacher_logits=m.teacher_logits if first else state.teacher_logits,
        pcbm=con.pcbm if con is not None else state.pcbm,
        dense_pcbm=con.pcbm if first and con is not None else state.dense_pcbm,
        dense_log_probs=m.log_probs if first else state.dense_log_probs,
    )


def record_of(identity: dict[str, Any], done: Level) -> LevelRecord:
    """The level's row: the trial's fixed columns, the mask's, and the level's own (a diverged level's
    row says so; no later level is trained)."""
    fixed = {**identity, "level": done.level, "density": masks.density(done.mask),
             "empty_layers": masks.empty_layers(done.mask), "train_steps": done.train_steps,
             "shared_from": done.shared_from}
    if done.measurement is None:
        return LevelRecord(**fixed, status="diverged", train_seconds=0.0, explain_seconds=0.0)
    return LevelRecord(**fixed, status="ok", **done.cols)


def publish(record: LevelRecord, mask: masks.Mask, results_dir: str | Path,
            weights: tuple[Weights, Weights] | None = None) -> dict[str, Any]:
    """Write the level's weights (trained, and where training began: lthray.tickets), its mask file, then its
    row (a no-op for each that exists): a row implies its mask and, where kept, its weights."""
    row = record.to_row()
    if weights is not None:
        tickets.write(results_dir, record.run_id, record.level, *weights)
    mask_files.write(results_dir, record.run_id, record.level, mask)
    results.write_row(results_dir, row)
    return row


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_trial(
    cfg: TrialConfig,
    workdir: str | Path,
    results_dir: str | Path,
    *,
    sweep: str = "",
    trial_id: str = "",
    device: torch.device | str | None = None,
    on_level: Callable[[dict[str, Any]], None] | None = None,
    shared: str | Path | None = None,
    rewind_points: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    """Run (or continue) every level of `cfg`; returns the rows of all finished levels (as stored).
    `shared`: the sweep's cache of finished levels (trial.cache), reused where another trial computed a
    level and published to where this one does; `rewind_points`: the steps the sweep's trials rewind to,
    all saved at level 0 when this trial trains it."""
    validate.check(cfg)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = check_masks(cfg, resume_state(workdir, _say), workdir, results_dir, _say)
    trial = setup(cfg, torch.device(device) if device is not None else default_device(), sweep=sweep,
              trial_id=trial_id)
    cache = LevelCache(shared) if shared is not None else NoCache()
    for level in range(state.level + 1, cfg.prune.levels + 1):
        if state.finished(cfg.prune.levels):
            break
        done = run_level(trial, state, level, cache, rewind_points)
        # the controls measure a retrained copy, not the lineage: their weights are not the row's network
        keep = done.measurement is not None and not trial.method.measures_copy
        row = publish(record_of(trial.identity, done), measured_mask(trial, level, done.mask), results_dir,
                      (done.lineage, done.began_from) if keep else None)
        state = advance(state, done)
        state.save(workdir / STATE)  # marks the level finished
        if on_level is not None:
            on_level(row)
    return results.read_run(results_dir, run_id(cfg), range(state.level + 1))
