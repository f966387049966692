"""The checks of a trial config that need registries: the config module is a leaf and checks ranges
only. Every entry point (the lthray CLI, `run_trial`, the sweep driver's preset validation) calls
`check`, so a bad name or a combination a method cannot run is refused before anything starts."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from lthray import masks
from lthray.config import ConfigError, TrialConfig, from_flat, to_flat
from lthray.data import DATASETS
from lthray.methods import METHODS
from lthray.models import MODELS, build
from lthray.rewind import REWINDS
from lthray.schedule import num_train, rewind_steps, total_steps


def _known(name: str, value: str, registry: Any) -> None:
    if value not in registry:
        raise ConfigError(f"{name}={value!r} is not allowed; expected one of {registry.names()}")


@lru_cache(maxsize=32)
def prunable_shape(model: str, dataset: str) -> tuple[int, int]:
    """(prunable layers, prunable weights) of `model` built for `dataset` (once per pair: a search
    validates thousands of configs)."""
    spec = DATASETS.get(dataset)
    m = build(model, spec.num_classes, 0, spec.channels)
    return len(masks.prunable(m)), masks.count(masks.ones(m))[1]


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
    vocab = cfg.concepts.vocabulary
    if cfg.concepts.enabled and vocab and not Path(vocab).expanduser().is_file():  # here, not in the config: a
        # stored config is read back where its file may not be (analysis)
        raise ConfigError(f"concepts.vocabulary={vocab!r} is not allowed; expected the path of a text file of "
                          "concept names, one per line (or '' for the list shipped with the dataset)")
    for key, value, allowed in METHODS.get(cfg.prune.method).problems(to_flat(cfg)):
        raise ConfigError(f"{key}={value!r} is not allowed; expected {allowed}")
    layers, weights = prunable_shape(cfg.model.name, cfg.data.dataset)
    final = cfg.prune.density_at(cfg.prune.levels)
    if round(final * weights) < layers:  # fewer weights than layers: some layer is cut off entirely
        what = ("prune.target_density", cfg.prune.target_density) if cfg.prune.target_density is not None else \
            ("prune.rate", cfg.prune.rate)
        raise ConfigError(f"{what[0]}={what[1]!r} is not allowed; expected a schedule that keeps at least one "
                          f"weight per prunable layer of {cfg.model.name} at its last level (>= {layers} of "
                          f"{weights}, density >= {layers / weights:.2g}; this one ends at {final:.2g})")
    total, k = total_steps(cfg), rewind_steps(cfg)  # total_steps refuses a batch larger than the data
    if k >= total:
        raise ConfigError(f"prune.rewind_step={cfg.prune.rewind_step!r} is not allowed; expected a step before "
                          f"the end of training ({total} iterations = {cfg.train.epochs} epochs of "
                          f"{num_train(cfg)} images)")
    return cfg


def checked_config(flat: dict[str, Any]) -> TrialConfig:
    """A checked config from its flat form (`from_flat`, then `check`)."""
    return check(from_flat(flat))
