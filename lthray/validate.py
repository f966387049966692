"""The checks of a trial config that need registries: the config module is a leaf and checks ranges
only. Every entry point (the lthray CLI, `run_trial`, the sweep driver's preset validation) calls
`check`, so a bad name or a combination a method cannot run is refused before anything starts."""

from __future__ import annotations

from typing import Any

from lthray.config import ConfigError, TrialConfig, from_flat, to_flat
from lthray.data import DATASETS
from lthray.methods import METHODS
from lthray.models import MODELS
from lthray.rewind import REWINDS
from lthray.schedule import num_train, rewind_steps, total_steps


def _known(name: str, value: str, registry: Any) -> None:
    if value not in registry:
        raise ConfigError(f"{name}={value!r} is not allowed; expected one of {registry.names()}")


def check(cfg: TrialConfig) -> TrialConfig:
    """`cfg`, or ConfigError naming the first value that is not allowed and what is."""
    _known("data.dataset", cfg.data.dataset, DATASETS)
    _known("model.name", cfg.model.name, MODELS)
    _known("prune.method", cfg.prune.method, METHODS)
    _known("prune.rewind", cfg.prune.rewind, REWINDS)
    n = DATASETS.get(cfg.data.dataset).num_train
    if cfg.data.train_size > n:
        raise ConfigError(f"data.train_size={cfg.data.train_size!r} is not allowed; expected 0 (all) or an "
                          f"integer in [100, {n}]")
    for key, value, allowed in METHODS.get(cfg.prune.method).problems(to_flat(cfg)):
        raise ConfigError(f"{key}={value!r} is not allowed; expected {allowed}")
    total, k = total_steps(cfg), rewind_steps(cfg)  # total_steps refuses a batch larger than the data
    if k >= total:
        raise ConfigError(f"prune.rewind_step={cfg.prune.rewind_step!r} is not allowed; expected a step before "
                          f"the end of training ({total} iterations = {cfg.train.epochs} epochs of "
                          f"{num_train(cfg)} images)")
    return cfg


def config(flat: dict[str, Any]) -> TrialConfig:
    """A checked config from its flat form (`from_flat`, then `check`)."""
    return check(from_flat(flat))
