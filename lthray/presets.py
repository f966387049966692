"""Sweep presets: a base trial config plus the categorical search space Optuna samples from.

Every choice is categorical, so `validate()` can build every config the sweep could ever sample and
refuse a bad preset or override before a single trial starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from typing import Any

from lthray import methods
from lthray.config import ConfigError
from lthray.methods import is_guided
from lthray.validate import checked_config


@dataclass(frozen=True)
class Preset:
    name: str
    base: dict[str, Any]  # flat config keys fixed for the whole sweep
    space: dict[str, list[Any]]  # flat config key -> choices
    guided_space: dict[str, list[Any]] = field(default_factory=dict)  # only sampled for guided methods
    num_samples: int = 8
    about: str = ""
    search: str = "optuna"  # optuna: sample num_samples configs | grid: every combination exactly once
    # A grid given as its configs rather than a product of choices (the confirm of a search): each a
    # dict of flat keys over `base`.
    points: tuple[dict[str, Any], ...] = ()

    def with_overrides(self, overrides: dict[str, Any]) -> Preset:
        """A copy whose base has `overrides` (and whose spaces and points no longer set those keys)."""
        space = {k: v for k, v in self.space.items() if k not in overrides}
        guided = {k: v for k, v in self.guided_space.items() if k not in overrides}
        points = tuple({k: v for k, v in p.items() if k not in overrides} for p in self.points)
        return dataclasses.replace(self, base={**self.base, **overrides}, space=space, guided_space=guided,
                                   points=points)

    def with_choices(self, choices: dict[str, list[Any]]) -> Preset:
        """A copy that samples `choices` for those keys (and no longer fixes them in the base). A key of the
        guided space stays there (sampled for guided methods only): sampling it in both spaces would give
        Optuna one parameter with two value sets, which it refuses mid-sweep."""
        base = {k: v for k, v in self.base.items() if k not in choices}
        guided = {**self.guided_space, **{k: v for k, v in choices.items() if k in self.guided_space}}
        space = {**self.space, **{k: v for k, v in choices.items() if k not in self.guided_space}}
        return dataclasses.replace(self, base=base, space=space, guided_space=guided)

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the space's choices, the guided keys only for guided methods: each config
        once, so every method meets IMP at the same seed, schedule and level (a paired design)."""
        if self.points:
            return [dict(p) for p in self.points]
        out, keys = [], list(self.space)
        for combo in itertools.product(*self.space.values()):
            params = dict(zip(keys, combo, strict=True))
            extra = self.guided_space if is_guided(params.get("prune.method", self.base.get("prune.method", "imp"))) \
                else {}
            for more in itertools.product(*extra.values()):
                out.append({**params, **dict(zip(extra, more, strict=True))})
        return out

    def _choices(self) -> list[dict[str, Any]]:
        """Every assignment of the sampled keys (guided keys for every method: a superset of the grid)."""
        if self.points:
            return self.grid()
        keys = list(self.space) + list(self.guided_space)
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*self.space.values(), *self.guided_space.values())]

    def validate(self) -> None:
        """Build every config the space can produce; raises ConfigError naming the first bad one. An Optuna
        search must end every schedule at one density: its objectives are read at the last level, and
        comparing trials at different densities would reward pruning less."""
        if not self.points:
            checked_config(self.base)
        finals = {}
        for choice in self._choices():
            try:
                cfg = checked_config({**self.base, **choice})
            except ConfigError as e:
                raise ConfigError(f"preset {self.name!r} can sample an invalid config {choice}: {e}") from None
            finals.setdefault(round(cfg.prune.density_at(cfg.prune.levels), 12), choice)
        if self.search == "optuna" and len(finals) > 1:
            lo, hi = min(finals), max(finals)
            raise ConfigError(
                f"preset {self.name!r}: its schedules end at densities from {lo:.4g} ({finals[lo]}) to {hi:.4g} "
                f"({finals[hi]}), but an Optuna search compares trials at their last level; fix "
                "prune.target_density (e.g. --set prune.target_density=0.0256) so that every schedule ends there")

    def signature(self) -> str:
        """Hash of what a sweep samples from: a resumed sweep must have the same one."""
        blob = json.dumps({"base": self.base, "space": self.space, "guided": self.guided_space,
                           **({"search": self.search} if self.search != "optuna" else {}),
                           **({"points": list(self.points)} if self.points else {})}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


_REWIND = {"prune.rewind": ["weight", "lr", "finetune"]}
_GUIDED = {"prune.guidance_weight": [0.25, 0.5, 1.0]}
# Method lists come from the registry (lthray.methods): a newly registered guided method joins every
# study, and every pruning-at-initialisation method the controls.
GUIDED_METHODS = methods.names(guided=True)
ALL_METHODS = ["imp", "random", *GUIDED_METHODS]
_METHODS = {"prune.method": ALL_METHODS}
# The lottery-ticket literature's controls and baselines (README: Methods): random pruning, the random
# reinitialisation control and the pruning-at-initialisation methods, all at IMP's levels' densities.
CONTROLS = ["imp", "random", *methods.names(reinit=True), *methods.names(shuffle=True), *methods.names(at_init=True)]

# Fashion-MNIST study: every method at one schedule, rewind and training length, 5 seeds, paired by
# (seed, level): with 3, a paired t-test has 80% power only for standardised effects above ~3.3, and a
# +-1-point equivalence test rarely passes (analysis.stats).
STUDY_SEEDS = 5
# The convnet's weights sit in its convolutions (60,048 conv vs 640 in the head), so its
# accuracy knee falls within the levels; a network dominated by one big FC layer keeps dense accuracy
# down to below 1% density on this data and would show no knee at all.
_FASHION = {"data.dataset": "fashion_mnist", "data.probe_size": 64, "model.name": "convnet",
            "data.augment": False, "train.batch_size": 128, "train.lr": 0.1, "prune.rewind": "weight",
            "prune.rewind_step": "0it",
            "concepts.source": "imagenet", "explain.faithfulness": "road"}

# The mission's search: every schedule (one-shot, or 2-6 levels of iterative pruning) ends at the same
# target density - 2.56%, the reference study's level 4 (0.4^4), where IMP's accuracy is past the knee -
# so the three objectives are always read at one density. Only guided methods: g = 0 of each is magnitude
# IMP exactly, so IMP is inside the space and every trial has a guidance weight (Optuna's importances
# need each parameter in every trial). One seed (0): a search point is one trial, and the confirm step
# re-runs the front with fresh seeds, paired with IMP.
TARGET_DENSITY = 0.0256
_SEARCH = {
    "prune.method": GUIDED_METHODS,
    "prune.guidance_weight": [0.0, 0.1, 0.25, 0.5, 0.75, 1.0],
    "prune.lambda_fid": [0.0, 0.1, 0.3, 1.0],
    "prune.levels": [1, 2, 4, 6],  # per-level rate 97.4% (one-shot), 84%, 60%, 45.7%
    "prune.scope": ["global", "layer"],
    "prune.rewind": ["weight", "lr", "finetune"],
}

# The preservation study (issue 34): three arms retrain IMP's own mask from the same rewind point, paired by
# seed and level, and differ only in the loss (A imp: cross-entropy; B imp_fid: + Grad-CAM fidelity; C imp_kd:
# + distillation to the dense logits). B's lambda and C's weight are fixed by the pilot on seeds 100-101
# before the study runs (analysis.preserve.pilot_choice; docs/study/fashion-preserve/README.md): B's lambda the
# largest of PILOT_LAMBDAS keeping accuracy within 0.5 points of A at 6.4% density, C's weight the smallest of
# PILOT_KD_WEIGHTS whose top-1 agreement with dense reaches B's there.
PILOT_LAMBDAS = (0.1, 0.3, 1.0, 3.0)
PILOT_KD_WEIGHTS = (0.1, 0.3, 1.0, 3.0)
PRESERVE_SEEDS = 10  # ~80% power for a 0.05 LRP difference when the paired SD is at most 0.04 (Holm over 6)
# the pilot's choices (docs/study/fashion-preserve/pilot: seeds 100-101 at 6.4% density, 2026-12-05)
PRESERVE = {"lambda_fid": 1.0, "kd_weight": 0.1}


def _arms(seeds: list[int], lambdas: tuple[float, ...], kd_weights: tuple[float, ...]) -> tuple[dict[str, Any], ...]:
    """The paired grid of the three arms, seed by seed (a sweep cut short has every arm at its seeds so far)."""
    return tuple(p for s in seeds for p in (
        {"seed": s, "prune.method": "imp"},
        *({"seed": s, "prune.method": "imp_fid", "prune.lambda_fid": lam} for lam in lambdas),
        *({"seed": s, "prune.method": "imp_kd", "prune.kd_weight": w} for w in kd_weights)))


_PRESERVE = {**_FASHION, "train.epochs": 2, "prune.rate": 0.6, "prune.levels": 5, "explain.occlusion": True}
# CIFAR-10 / ResNet-20 with open_lth's recipe (models/cifar_resnet.py: batch 128, SGD lr 0.1, momentum 0.9,
# weight decay 1e-4, 160 epochs, global pruning at 20% a level); lthray keeps its own warmup-then-cosine
# schedule where open_lth steps the rate down at 80 and 120 epochs. 36% a level is two of open_lth's levels:
# levels 4, 6 and 7 are its 16.8%, 6.9% and 4.4% density. 30 epochs a level (not 160) is what a one-GPU
# budget allows (docs/study/cifar10-preserve.md: the estimate); the rewind point k is the instability pilot's.
CIFAR_REWIND = "2ep"  # placeholder until cifar10-preserve-instability has run (pending: no GPU so far)
_CIFAR = {"data.dataset": "cifar10", "data.probe_size": 128, "model.name": "resnet20", "train.epochs": 30,
          "train.batch_size": 128, "train.lr": 0.1, "train.momentum": 0.9, "train.weight_decay": 1e-4,
          "concepts.clip_model": "ViT-B-32", "concepts.clip_pretrained": "laion2b_s34b_b79k"}
CIFAR_DENSITIES = (0.168, 0.0687, 0.044)

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "smoke",
            base={"data.dataset": "digits", "data.probe_size": 16, "model.name": "convnet", "train.epochs": 2,
                  "train.batch_size": 128, "prune.levels": 2, "prune.rate": 0.5,
                  "explain.faithfulness": "confidence_drop", "explain.guide_size": 64, "concepts.proj_steps": 30},
            space={**_METHODS, "prune.rewind": ["weight", "lr"], "prune.rewind_step": ["0it", "5it"],
                   "prune.lambda_fid": [0.0, 0.5], "seed": [0, 1]},
            guided_space={"prune.guidance_weight": [0.5]},
            num_samples=2,
            about="seconds per trial: wiring checks and tests",
        ),
        Preset(
            "digits",
            base={"data.dataset": "digits", "data.probe_size": 64, "model.name": "convnet", "train.epochs": 6,
                  "train.batch_size": 128, "train.lr": 0.1, "prune.target_density": 0.01},
            # digits is easy (DESIGN.md: ~99% down to 17% density), so every schedule ends at 1% density
            space={**_METHODS, **_REWIND, "prune.rewind_step": ["0it", "1ep"], "prune.lambda_fid": [0.0, 0.5],
                   "prune.levels": [4, 6, 8], "seed": [0, 1, 2]},
            guided_space=_GUIDED,
            num_samples=8,
            about="embedded sklearn digits, convnet: a few minutes on a laptop CPU",
        ),
        Preset(
            "fashion-search",
            base={**_FASHION, "train.epochs": 2, "prune.target_density": TARGET_DENSITY, "seed": 0},
            space={**_SEARCH, "prune.rewind_step": ["0it", "50it", "200it", "1ep"]},  # 1ep = 468 it
            num_samples=64,
            about="the mission's search: schedules x rewind x guidance at 2.56% density (Optuna, 3 objectives)",
        ),
        Preset(
            "fashion-search-demo",
            base={**_FASHION, "data.train_size": 8000, "train.epochs": 2, "concepts.bank_size": 1000,
                  "data.probe_size": 32, "prune.target_density": TARGET_DENSITY, "seed": 0},
            space={**_SEARCH, "prune.rewind_step": ["0it", "10it", "30it", "1ep"]},  # 1ep = 62 it
            num_samples=12,
            about="make search-demo: the search on an 8k-image subset, then its confirm",
        ),
        Preset(
            "fashion",
            base={**_FASHION, "train.epochs": 2, "prune.rate": 0.6, "prune.levels": 5},
            # seed first: trials run seed by seed, so a sweep cut short has every method at its seeds so far
            space={"seed": list(range(STUDY_SEEDS)), "prune.method": ALL_METHODS},
            guided_space={"prune.guidance_weight": [0.5]},
            num_samples=STUDY_SEEDS * len(ALL_METHODS), search="grid",
            about=f"the reference study: Fashion-MNIST, every method x {STUDY_SEEDS} seeds, paired",
        ),
        Preset(
            "fashion-demo",
            base={**_FASHION, "data.train_size": 8000, "train.epochs": 1, "prune.rate": 0.6, "prune.levels": 4,
                  "concepts.bank_size": 1000, "data.probe_size": 32},
            space={"prune.method": ALL_METHODS, "seed": [0, 1, 2]}, guided_space={"prune.guidance_weight": [0.5]},
            num_samples=3 * len(ALL_METHODS), search="grid",
            about="make demo: the study's design on an 8k-image subset, 1 epoch a level",
        ),
        Preset(
            "fashion-controls",
            base={**_FASHION, "train.epochs": 2, "prune.rate": 0.6, "prune.levels": 5},
            space={"seed": list(range(STUDY_SEEDS)), "prune.method": CONTROLS},
            num_samples=STUDY_SEEDS * len(CONTROLS), search="grid",
            about="the study's design with the LTH controls: random pruning, random reinit, SNIP, GraSP, SynFlow",
        ),
        Preset(
            "fashion-instability",
            base={**_FASHION, "train.epochs": 2, "prune.rate": 0.6, "prune.levels": 5, "prune.method": "imp",
                  "instability.enabled": True, "instability.test_size": 2000},
            space={"prune.rewind_step": ["0it", "25it", "100it", "1ep"], "seed": [0, 1, 2]}, num_samples=12,
            search="grid",
            about="instability analysis of IMP: the error barrier at 4 rewind points x 3 seeds (2x training)",
        ),
        Preset(
            "fashion-preserve-pilot",
            base={**_PRESERVE, "prune.levels": 3},  # the pilot reads 6.4% density: level 3
            space={}, points=_arms([100, 101], PILOT_LAMBDAS, PILOT_KD_WEIGHTS), search="grid",
            num_samples=2 * (1 + len(PILOT_LAMBDAS) + len(PILOT_KD_WEIGHTS)),
            about="the preservation study's pilot: B's lambda and C's distillation weight on seeds 100-101",
        ),
        Preset(
            "fashion-preserve",
            base=_PRESERVE, space={}, search="grid", num_samples=3 * PRESERVE_SEEDS,
            points=_arms(list(range(PRESERVE_SEEDS)), (PRESERVE["lambda_fid"],), (PRESERVE["kd_weight"],)),
            about=f"explanation- vs function-preserving retraining of IMP's masks, {PRESERVE_SEEDS} paired seeds",
        ),
        Preset(
            "cifar10-preserve-instability",
            base={**_CIFAR, "prune.rate": 0.36, "prune.levels": 4, "prune.method": "imp",
                  "instability.enabled": True, "instability.test_size": 2000, "concepts.enabled": False},
            space={"prune.rewind_step": ["0it", "500it", "1000it", "2000it", "4000it"], "seed": [0, 1]},
            num_samples=10, search="grid",
            about="CIFAR-10 ResNet-20: the rewind point k of cifar10-preserve (error barrier at dense and 16.8%)",
        ),
        Preset(
            "cifar10-preserve",
            base={**_CIFAR, "prune.rate": 0.36, "prune.levels": 7, "prune.rewind": "weight",
                  "prune.rewind_step": CIFAR_REWIND, "explain.occlusion": True},
            space={}, search="grid", num_samples=3 * PRESERVE_SEEDS,
            points=_arms(list(range(PRESERVE_SEEDS)), (PRESERVE["lambda_fid"],), (PRESERVE["kd_weight"],)),
            about="the preservation study's anchor design: CIFAR-10, ResNet-20, open_lth's recipe (for a GPU)",
        ),
        Preset(
            "cifar10-resnet20",
            base={"data.dataset": "cifar10", "data.probe_size": 128, "model.name": "resnet20", "train.epochs": 30,
                  "train.batch_size": 128, "train.lr": 0.1, "train.weight_decay": 1e-4,
                  "concepts.clip_model": "ViT-B-32", "concepts.clip_pretrained": "laion2b_s34b_b79k",
                  "prune.target_density": 0.035},
            space={**_METHODS, **_REWIND, "prune.rewind_step": ["0it", "500it", "2ep"],
                   "prune.lambda_fid": [0.0, 0.1, 1.0], "prune.levels": [10, 15],
                   "seed": [0, 1, 2]},
            guided_space=_GUIDED,
            num_samples=64,
            about="CIFAR-10 (downloads once), ResNet-20: for a GPU cluster",
        ),
    ]
}


def sample(preset: Preset, trial: Any) -> dict[str, Any]:
    """Optuna define-by-run space: the sampled flat keys; guided keys only when the method is guided."""
    out = {k: trial.suggest_categorical(k, v) for k, v in preset.space.items()}
    method = out.get("prune.method", preset.base.get("prune.method", "imp"))
    if is_guided(method):
        out.update({k: trial.suggest_categorical(k, v) for k, v in preset.guided_space.items()})
    return out


__all__ = ["ALL_METHODS", "CONTROLS", "GUIDED_METHODS", "PRESETS", "Preset", "is_guided", "sample"]
