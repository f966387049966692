"""A trial's training schedule in optimizer steps: how many an epoch has, where training ends and where
the rewind point k falls. Functions of the config and the dataset's size, kept out of `lthray.config`
so that the config stays a leaf."""

from __future__ import annotations

from dataclasses import dataclass

from lthray.config import ConfigError, TrialConfig
from lthray.data import DATASETS
from lthray.data import steps_per_epoch as _full_batches


@dataclass(frozen=True)
class Schedule:
    """Optimizer steps [start, end) of the trial's schedule; `constant_lr` replaces the schedule's rate."""

    start: int
    end: int
    constant_lr: float | None = None


def num_train(cfg: TrialConfig) -> int:
    """Training images the trial uses (data.train_size, or the whole training set)."""
    return cfg.data.train_size or DATASETS.get(cfg.data.dataset).num_train


def check_loaded(cfg: TrialConfig, loaded: int) -> None:
    """Raise ConfigError unless the `loaded` training images are as many as the schedule counts: the
    schedule (epochs, rewind points, the learning-rate decay) counts steps from the dataset's declared size,
    so files of another size would silently train another length (a 240-image archive, 200x long)."""
    if loaded != num_train(cfg):
        raise ConfigError(f"dataset {cfg.data.dataset} loaded {loaded} training images but the schedule counts "
                          f"{num_train(cfg)}: fix its DatasetSpec.num_train, or set data.train_size={loaded}")


def steps_per_epoch(cfg: TrialConfig) -> int:
    n = _full_batches(num_train(cfg), cfg.train.batch_size)
    if n < 1:
        raise ConfigError(f"train.batch_size={cfg.train.batch_size!r} is not allowed; expected at most the "
                          f"{num_train(cfg)} training images of {DATASETS.get(cfg.data.dataset).name}")
    return n


def total_steps(cfg: TrialConfig) -> int:
    """Optimizer steps of one level's full schedule."""
    return cfg.train.epochs * steps_per_epoch(cfg)


def rewind_steps(cfg: TrialConfig) -> int:
    """The rewind point k in iterations."""
    return cfg.prune.rewind_at.iterations(steps_per_epoch(cfg))


def dense(cfg: TrialConfig) -> Schedule:
    """Level 0: the whole schedule from step 0."""
    return Schedule(0, total_steps(cfg))


def from_rewind(cfg: TrialConfig, constant_lr: float | None = None) -> Schedule:
    """From the rewind point k to the end."""
    return Schedule(rewind_steps(cfg), total_steps(cfg), constant_lr)
