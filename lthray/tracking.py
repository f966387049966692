"""Experiment trackers for a trial run without Ray (`lthray trial --log NAME`): the same per-level metrics a
sweep hands to Ray Tune's logger callbacks (the `report` columns of LevelRecord, results.REPORTED), written
with each tracker's own client, one run per trial, the level as the step. A sweep uses Ray Tune's
callbacks instead (sweeps/imp_vs_guided.py: trackers), so the two never write the same run twice.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any, Protocol

from lthray.results import REPORTED

# --log NAME -> the module its client needs and the package that installs it (checked before any work)
TRACKERS = {"mlflow": ("mlflow", "mlflow-skinny"), "tensorboard": ("tensorboardX", "tensorboardX"),
            "wandb": ("wandb", "wandb")}


class TrackerUnavailable(RuntimeError):
    """A --log tracker's client is not installed: one line naming the package."""


class Tracker(Protocol):
    def log(self, metrics: dict[str, float], step: int) -> None: ...
    def close(self) -> None: ...


def check(names: list[str]) -> None:
    for name in names:
        module, package = TRACKERS[name]
        if importlib.util.find_spec(module) is None:
            raise TrackerUnavailable(f"--log {name} needs the {module!r} module, which is not installed; "
                                     f"pip install {package} (or drop --log {name})")


def metrics_of(row: dict[str, Any]) -> dict[str, float]:
    """The reported columns that hold a number (a level that measured nothing leaves some empty)."""
    return {k: float(row[k]) for k in REPORTED
            if isinstance(row.get(k), int | float) and not isinstance(row.get(k), bool)}


class _MLflow:
    def __init__(self, run_name: str, folder: Path, params: dict[str, Any]) -> None:
        import mlflow

        # A local SQLite store, as the sweep's: MLflow 3 keeps the ./mlruns file store in maintenance mode
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{folder / 'mlflow.db'}")
        mlflow.set_experiment("lthray-trial")
        self._mlflow = mlflow
        self._run = mlflow.start_run(run_name=run_name)
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._mlflow.log_metrics(metrics, step=step)

    def close(self) -> None:
        self._mlflow.end_run()


class _TensorBoard:
    def __init__(self, run_name: str, folder: Path, params: dict[str, Any]) -> None:
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(str(folder / "tensorboard" / run_name))
        self._writer.add_text("config", "\n".join(f"    {k} = {v}" for k, v in sorted(params.items())))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for k, v in metrics.items():
            self._writer.add_scalar(k, v, global_step=step)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class _WandB:
    def __init__(self, run_name: str, folder: Path, params: dict[str, Any]) -> None:
        import wandb

        mode = os.environ.setdefault("WANDB_MODE", "offline")  # nothing leaves the machine unless asked
        self._run = wandb.init(project="lthray-trial", name=run_name, config=params, mode=mode, dir=str(folder))

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(metrics, step=step)

    def close(self) -> None:
        self._run.finish()


_CLIENTS = {"mlflow": _MLflow, "tensorboard": _TensorBoard, "wandb": _WandB}


def open_all(names: list[str], run_name: str, folder: str | Path, params: dict[str, Any]) -> list[Tracker]:
    """One open run per tracker named (checked installed first); `folder` holds the local stores."""
    check(names)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return [_CLIENTS[name](run_name, folder, params) for name in dict.fromkeys(names)]
