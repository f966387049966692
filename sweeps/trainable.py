"""The Ray Tune function trainable: one lthray trial, reporting (and checkpointing) once per level."""

from __future__ import annotations

import fcntl
import logging
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from lthray.config import run_id
from lthray.plugins import load_all
from lthray.results import REPORTED
from lthray.trial import STATE, last_level, run_trial
from lthray.validate import checked_config

# final accuracy, final Grad-CAM fidelity and final concept fidelity (all to the dense model)
OBJECTIVES = {"test_acc": "max", "cam_spearman": "max", "concept_topk_overlap": "max"}


def metrics_of(row: dict[str, Any]) -> dict[str, Any]:
    """What a trial reports to Tune: the columns marked `report` in LevelRecord, and the node it ran on.
    A diverged level scores 0 on every objective (worst possible)."""
    ok = row["status"] == "ok"
    return {
        **{k: row[k] for k in REPORTED}, "node_id": ray.get_runtime_context().get_node_id(),
        **{k: (row[k] if ok and row[k] is not None and math.isfinite(row[k]) else 0.0) for k in OBJECTIVES},
    }


def trainable(params: dict[str, Any], *, base: dict[str, Any], results_dir: str, sweep: str,
              runs_dir: str | None = None, shared: str | None = None, rewind_points: tuple[int, ...] = (),
              plugins: tuple[str, ...] = (), cwd: str | None = None) -> None:
    """Run the trial for base+params, from whichever is further along: Tune's checkpoint or the run's
    own folder RUNS_DIR/RUN_ID (shared by every trial of that config, so none redoes finished work).
    `shared`: the sweep's store of finished levels (lthray.trial.cache), `rewind_points` the steps level 0
    saves; `plugins` the driver's --plugin modules, imported here before the config is read, with the
    driver's working directory `cwd` on the path (where a dotted plugin module usually sits)."""
    if cwd and os.path.isdir(cwd) and cwd not in sys.path:
        sys.path.append(cwd)
    load_all(plugins)
    # Ray sets OMP_NUM_THREADS to the trial's CPUs; torch must use that many, not every core.
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    logging.getLogger("ray.train").setLevel(logging.WARNING)  # no "Checkpoint created" line per level
    cfg = checked_config({**base, **params.get("params", params)})  # grid search: one 'params' dict
    own = runs_dir is not None
    workdir = Path(runs_dir) / run_id(cfg) if own else Path(tempfile.mkdtemp(prefix="lthray-trial-"))
    workdir.mkdir(parents=True, exist_ok=True)
    lock = open(workdir / ".lock", "w")  # noqa: SIM115 - held for the whole trial
    fcntl.flock(lock, fcntl.LOCK_EX)  # two trials of one config: the second waits, then finds it done
    try:
        ckpt = tune.get_checkpoint()
        if ckpt is not None:
            with ckpt.as_directory() as d:
                if last_level(Path(d) / STATE) > last_level(workdir / STATE):
                    shutil.copy2(Path(d) / STATE, workdir / STATE)
        reported = []

        def on_level(row: dict[str, Any]) -> None:
            # Report a copy: Tune persists the checkpoint folder and the next level overwrites state.pt.
            snap = Path(tempfile.mkdtemp(prefix="lthray-ckpt-"))
            try:
                shutil.copy2(workdir / STATE, snap / STATE)
                tune.report(metrics_of(row), checkpoint=tune.Checkpoint.from_directory(str(snap)))
            finally:  # report() has copied it into the trial's storage by now
                shutil.rmtree(snap, ignore_errors=True)
            reported.append(row)

        rows = run_trial(cfg, workdir, results_dir, sweep=sweep, trial_id=tune.get_context().get_trial_id(),
                         on_level=on_level, shared=shared, rewind_points=tuple(rewind_points))
        if not reported and rows:  # restored after its last level: report the final result once more
            tune.report(metrics_of(rows[-1]))
    finally:
        lock.close()
        if not own:
            shutil.rmtree(workdir, ignore_errors=True)
