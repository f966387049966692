"""Hyperparameters as small frozen dataclasses (open_lth style), their ranges checked on construction.

A leaf module: it imports nothing from lthray, so every layer can use it. What needs a registry (is the
method, model or dataset known; does the method allow this rewind; is the rewind point inside the
schedule) is checked by `lthray.validate.check`, which every entry point calls.

`run_id(cfg)` hashes the fields that differ from their defaults, so adding a field with a default
later keeps every old id (and so every finished run) valid. `to_flat`/`from_flat` map a config 1:1
to the flat `{"train.epochs": 4, ...}` dicts that Ray Tune and Optuna sample.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, fields
from typing import Any


class ConfigError(ValueError):
    """A config value is out of its allowed range; the message names the value and what is allowed."""


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} is not allowed; expected {allowed}")


_STEPS = re.compile(r"^\s*(\d+)\s*(it|ep)\s*$")


@dataclass(frozen=True)
class Step:
    """A point on the training schedule that keeps its unit: '500it' or '2ep'.

    Parsed once, here; converted to iterations once, by `iterations` (which needs the data's steps per
    epoch). `str(step)` gives the spec back as written, for rows and plot labels.
    """

    n: int
    unit: str = "it"  # "it" (iterations) or "ep" (epochs)

    @classmethod
    def parse(cls, spec: str | int | Step) -> Step:
        """'500it', '2ep', or a bare int of iterations; ConfigError naming what is allowed otherwise."""
        if isinstance(spec, Step):
            return spec
        if isinstance(spec, int) and not isinstance(spec, bool):
            if spec < 0:
                raise ConfigError(f"step count {spec!r} is negative; expected an integer >= 0 or 'Nit'/'Nep'")
            return cls(spec, "it")
        m = _STEPS.match(str(spec))
        if not m:
            raise ConfigError(f"step count {spec!r} is not understood; expected e.g. '0it', '500it' or '2ep' (>= 0)")
        return cls(int(m.group(1)), m.group(2))

    def iterations(self, steps_per_epoch: int) -> int:
        return self.n * steps_per_epoch if self.unit == "ep" else self.n

    def __str__(self) -> str:
        return f"{self.n}{self.unit}"


def parse_steps(spec: str | int, steps_per_epoch: int) -> int:
    """'500it' -> 500 iterations, '2ep' -> 2 epochs of iterations, a bare int -> iterations."""
    return Step.parse(spec).iterations(steps_per_epoch)


def parse_value(text: str) -> Any:
    """A command-line value: JSON if it parses ('2', '0.5', 'true', '[20, 40]'), else the bare string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split_key_value(text: str, example: str = "train.epochs=6") -> tuple[str, str]:
    """'KEY=VALUE' -> (key, raw value text); ConfigError if it is not of that form."""
    key, eq, raw = text.partition("=")
    if not eq or not key.strip():
        raise ConfigError(f"{text!r} is not KEY=VALUE (e.g. {example})")
    return key.strip(), raw


def parse_override(text: str, example: str = "train.epochs=6") -> tuple[str, Any]:
    """'KEY=VALUE' -> (key, parsed value); ConfigError if it is not of that form."""
    key, raw = split_key_value(text, example)
    return key, parse_value(raw)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "digits"
    probe_size: int = 64  # test images every explanation is computed on (same images for every trial)
    train_size: int = 0  # training images used: 0 = all; N = a fixed stratified subset (quick demos)
    # random shifts (and flips where label-preserving). Off for the short Fashion-MNIST schedules:
    # measured at 2 epochs, no augmentation 90.2% vs 89.5% with 1-px shifts + flips (it slows convergence).
    augment: bool = True

    def __post_init__(self) -> None:
        # the dataset's name and size are checked against its registry by lthray.validate
        _check(isinstance(self.dataset, str) and bool(self.dataset), "data.dataset", self.dataset, "a dataset name")
        _check(isinstance(self.probe_size, int) and 2 <= self.probe_size <= 1024, "data.probe_size",
               self.probe_size, "an integer in [2, 1024]")
        _check(isinstance(self.augment, bool), "data.augment", self.augment, "true or false")
        _check(isinstance(self.train_size, int) and (self.train_size == 0 or self.train_size >= 100),
               "data.train_size", self.train_size, "0 (all) or an integer >= 100")


@dataclass(frozen=True)
class ModelConfig:
    name: str = "convnet"

    def __post_init__(self) -> None:  # the name is checked against lthray.models.MODELS by lthray.validate
        _check(isinstance(self.name, str) and bool(self.name), "model.name", self.name, "a model name")


DTYPES = ("float32", "float64")
# torch.compile modes for the training step; "reduce-overhead" adds CUDA graphs (on a CPU it is "default")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune-no-cudagraphs")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 4  # per level (each level retrains this long, minus the rewind point)
    batch_size: int = 128
    lr: float = 0.05  # peak learning rate (SGD, Nesterov momentum)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup: float = 0.1  # fraction of steps with linear warmup, then cosine decay to lr * final_lr
    final_lr: float = 0.01  # also the constant rate of fine-tuning (Renda et al.'s baseline)
    label_smoothing: float = 0.0
    # float64 makes a trial reproducible across CPUs to ~1e-10 (float32 sums differ in their last bits
    # between SIMD kernel sets, and training amplifies that to ~1e-2 in 20 steps): for checks, not studies.
    dtype: str = "float32"
    # torch.compile the training forward and backward in this mode (lthray.train.compiled_forward); true
    # means "default", false "off". Off by default: on a 2-core EPYC it does not pay over the channels-last
    # eager step (python -m bench.step, rows 11-12; docs/performance.md).
    compile: str = "off"

    def __post_init__(self) -> None:
        if isinstance(self.compile, bool):
            object.__setattr__(self, "compile", "default" if self.compile else "off")
        _check(self.compile in COMPILE_MODES, "train.compile", self.compile,
               f"true, false or one of {list(COMPILE_MODES)}")
        _check(isinstance(self.epochs, int) and self.epochs >= 1, "train.epochs", self.epochs, "an integer >= 1")
        _check(isinstance(self.batch_size, int) and self.batch_size >= 1, "train.batch_size", self.batch_size,
               "an integer >= 1")
        _check(0 < self.lr <= 10 and math.isfinite(self.lr), "train.lr", self.lr, "a number in (0, 10]")
        _check(0 <= self.momentum < 1, "train.momentum", self.momentum, "a number in [0, 1)")
        _check(0 <= self.weight_decay < 1, "train.weight_decay", self.weight_decay, "a number in [0, 1)")
        _check(0 <= self.warmup < 1, "train.warmup", self.warmup, "a fraction in [0, 1)")
        _check(0 <= self.final_lr <= 1, "train.final_lr", self.final_lr, "a fraction of lr in [0, 1]")
        _check(0 <= self.label_smoothing < 1, "train.label_smoothing", self.label_smoothing, "a number in [0, 1)")
        _check(self.dtype in DTYPES, "train.dtype", self.dtype, f"one of {list(DTYPES)}")


SCOPES = ("global", "layer")
MIXES = ("rank", "max")  # lthray.methods.base.MIX_SCALES: the scale a guided method mixes its scores on


@dataclass(frozen=True)
class PruneConfig:
    method: str = "imp"
    scope: str = "global"  # rank all layers together, or prune every layer by the same fraction
    rate: float = 0.2  # fraction of the *remaining* weights removed per level
    levels: int = 5  # pruning levels after the dense level 0
    target_density: float | None = None  # if set, overrides `rate` so that `levels` levels reach it
    rewind: str = "weight"  # weight: rewind weights to step k | lr: keep weights, replay LR from k | finetune
    rewind_step: str = "0it"  # k, as 'Nit' or 'Nep'; 0 is the original lottery ticket (rewind to init)
    guidance_weight: float = 0.0  # g in (1 - g) * magnitude + g * explanation score (guided methods)
    mix: str = "rank"  # the scale both are mixed on: percentile ranks, or 'max' (divided by the largest; before 12-05)
    lambda_fid: float = 0.0  # explanation-preserving retraining: + lambda_fid * (1 - cos(CAM, dense CAM))
    # knowledge distillation to the dense model's logits on every training batch (the imp_kd arm only):
    # + kd_weight * T^2 * KL(softmax(dense / T) || softmax(model / T)) with T = kd_temperature (Hinton et al. 2015)
    kd_weight: float = 0.0
    kd_temperature: float = 4.0
    pai_iterations: int = 100  # rounds of iterative pruning at initialisation (SynFlow; Tanaka et al. use 100)

    def __post_init__(self) -> None:  # method and rewind names: lthray.validate, against their registries
        _check(self.scope in SCOPES, "prune.scope", self.scope, f"one of {list(SCOPES)}")
        _check(self.mix in MIXES, "prune.mix", self.mix, f"one of {list(MIXES)}")
        _check(0 < self.rate < 1, "prune.rate", self.rate, "a fraction in (0, 1)")
        _check(isinstance(self.levels, int) and 1 <= self.levels <= 100, "prune.levels", self.levels,
               "an integer in [1, 100]")
        if self.target_density is not None:
            _check(0 < self.target_density <= 1, "prune.target_density", self.target_density,
                   "a density (fraction of weights remaining) in (0, 1]")
        Step.parse(self.rewind_step)  # syntax and sign; the upper bound needs the data (TrialConfig)
        _check(0 <= self.guidance_weight <= 1, "prune.guidance_weight", self.guidance_weight, "a number in [0, 1]")
        _check(0 <= self.lambda_fid <= 100, "prune.lambda_fid", self.lambda_fid, "a number in [0, 100]")
        _check(0 <= self.kd_weight <= 100, "prune.kd_weight", self.kd_weight, "a number in [0, 100]")
        _check(0 < self.kd_temperature <= 100, "prune.kd_temperature", self.kd_temperature, "a number in (0, 100]")
        _check(isinstance(self.pai_iterations, int) and 1 <= self.pai_iterations <= 1000, "prune.pai_iterations",
               self.pai_iterations, "an integer in [1, 1000]")

    @property
    def rewind_at(self) -> Step:
        """The rewind point k with its unit."""
        return Step.parse(self.rewind_step)

    @property
    def rate_per_level(self) -> float:
        """Fraction of remaining weights pruned at each level."""
        if self.target_density is None:
            return self.rate
        return 1.0 - self.target_density ** (1.0 / self.levels)

    def density_at(self, level: int) -> float:
        """Nominal density after `level` levels (the mask's real density is exact to one weight).
        With a target density the last level's is the target itself, not a power's rounding of it."""
        if self.target_density is not None:
            return self.target_density ** (level / self.levels)
        return (1.0 - self.rate_per_level) ** level


FAITHFULNESS = ("road", "confidence_drop")


@dataclass(frozen=True)
class ExplainConfig:
    topk: float = 0.2  # top-k% of pixels compared by IoU
    faithfulness: str = "road"  # ROAD combined (Rong et al. 2022) or CAM-multiplied confidence drop
    road_percentiles: tuple[int, ...] = (20, 40, 60, 80)
    # Training images (never test images: nothing seen at test time may steer training) that guided
    # criteria score on and that explanation-preserving retraining compares maps on.
    guide_size: int = 256
    fid_batch: int = 32
    lrp: bool = True  # LRP maps (zennit) beside Grad-CAM at every level, on the same probe images
    # Occlusion maps (captum) on the same probe images: the attribution no training loss reads (the
    # preservation study's held-out yardstick); a window x window square of zeros slid with the stride.
    occlusion: bool = False
    occlusion_window: int = 4
    occlusion_stride: int = 2
    # The same-initialisation noise floor: at level 0 a second dense copy from the same rewind point with
    # another data order, measured against the dense model as every pruned level is (one more dense
    # training per seed: level 0 is shared by a seed's trials).
    same_init_floor: bool = True


    def __post_init__(self) -> None:
        _check(0 < self.topk < 1, "explain.topk", self.topk, "a fraction in (0, 1)")
        _check(isinstance(self.guide_size, int) and 8 <= self.guide_size <= 4096, "explain.guide_size",
               self.guide_size, "an integer in [8, 4096]")
        _check(isinstance(self.fid_batch, int) and 1 <= self.fid_batch <= self.guide_size, "explain.fid_batch",
               self.fid_batch, "an integer in [1, explain.guide_size]")
        _check(isinstance(self.lrp, bool), "explain.lrp", self.lrp, "true or false")
        _check(isinstance(self.occlusion, bool), "explain.occlusion", self.occlusion, "true or false")
        _check(isinstance(self.occlusion_window, int) and 1 <= self.occlusion_window <= 64, "explain.occlusion_window",
               self.occlusion_window, "an integer in [1, 64]")
        _check(isinstance(self.occlusion_stride, int) and 1 <= self.occlusion_stride <= self.occlusion_window,
               "explain.occlusion_stride", self.occlusion_stride, "an integer in [1, explain.occlusion_window]")
        _check(isinstance(self.same_init_floor, bool), "explain.same_init_floor", self.same_init_floor, "true or false")
        _check(self.faithfulness in FAITHFULNESS, "explain.faithfulness", self.faithfulness,
               f"one of {list(FAITHFULNESS)}")
        _check(len(self.road_percentiles) > 0 and all(0 < int(p) < 100 for p in self.road_percentiles),
               "explain.road_percentiles", self.road_percentiles, "a non-empty list of integers in (0, 100)")


CONCEPT_SOURCES = ("imagenet", "clip")


@dataclass(frozen=True)
class ConceptConfig:
    enabled: bool = True
    # imagenet: ImageNet classes scored by a packaged pretrained EfficientNet-Lite0 (offline, real);
    # clip: open_clip text concepts (the default here only so that old run ids keep their meaning:
    # every preset and entry point sets the source explicitly).
    source: str = "clip"
    bank_size: int = 2000  # training images the bank scores (0 = all): the ImageNet model is ~35 img/s on 2 cores
    image_size: int = 160  # px the images are upscaled to for the ImageNet model (224 ranks better, 2.5x slower)
    # open_clip model and pretrained tag. '' = seeded random weights: offline and in tests this checks
    # the pipeline only. With a network use e.g. clip_model='ViT-B-32', clip_pretrained='laion2b_s34b_b79k'.
    clip_model: str = "lthray-tiny-clip"
    clip_pretrained: str = ""
    # A concept list of your own: a text file, one concept per line ('#' comments); for source=imagenet each
    # line is 'INDEX name' with an ImageNet class index. '' = the list shipped for the dataset (docs/methods.md).
    vocabulary: str = ""
    topk: int = 5  # top concepts per class compared with the dense model's
    proj_steps: int = 200  # Adam steps of the LF-CBM projection (full batch)
    fidelity_cutoff: float = 0.45  # keep concepts the dense features predict above this (LF-CBM's default)
    refits: int = 5  # bootstrap refits of the concept -> class layer each level's concept measure averages
    C: float = 0.5  # inverse regularisation of the elastic-net concept -> class layer
    l1_ratio: float = 0.5

    def __post_init__(self) -> None:
        _check(isinstance(self.enabled, bool), "concepts.enabled", self.enabled, "true or false")
        _check(self.source in CONCEPT_SOURCES, "concepts.source", self.source, f"one of {list(CONCEPT_SOURCES)}")
        _check(isinstance(self.bank_size, int) and self.bank_size >= 0, "concepts.bank_size", self.bank_size,
               "an integer >= 0 (0 = every training image)")
        _check(isinstance(self.image_size, int) and 32 <= self.image_size <= 512, "concepts.image_size",
               self.image_size, "an integer in [32, 512]")
        _check(isinstance(self.clip_model, str) and bool(self.clip_model), "concepts.clip_model", self.clip_model,
               "an open_clip model name, e.g. 'ViT-B-32' or 'lthray-tiny-clip'")
        _check(isinstance(self.vocabulary, str), "concepts.vocabulary", self.vocabulary, "a path, or ''")
        _check(isinstance(self.topk, int) and self.topk >= 1, "concepts.topk", self.topk, "an integer >= 1")
        _check(isinstance(self.fidelity_cutoff, (int, float)) and -1 <= self.fidelity_cutoff < 1,
               "concepts.fidelity_cutoff", self.fidelity_cutoff, "a number in [-1, 1) (-1 keeps every concept)")
        _check(isinstance(self.refits, int) and self.refits >= 1, "concepts.refits", self.refits, "an integer >= 1")
        _check(isinstance(self.proj_steps, int) and self.proj_steps >= 1, "concepts.proj_steps", self.proj_steps,
               "an integer >= 1")
        _check(self.C > 0, "concepts.C", self.C, "a number > 0")
        _check(0 <= self.l1_ratio <= 1, "concepts.l1_ratio", self.l1_ratio, "a number in [0, 1]")


@dataclass(frozen=True)
class InstabilityConfig:
    """Instability analysis (Frankle et al. 2020, 'Linear mode connectivity and the lottery ticket
    hypothesis'): at every level a second copy of the measured network is trained from the same start
    with another data order, and the test error is measured along the straight line between the two."""

    enabled: bool = False  # doubles each level's training, so off unless asked for
    points: int = 11  # interpolation points, ends included (Frankle et al. use 30)
    bn_batches: int = 20  # training batches that re-estimate BN statistics at each point
    test_size: int = 0  # test images the path's error is measured on (0 = all)

    def __post_init__(self) -> None:
        _check(isinstance(self.enabled, bool), "instability.enabled", self.enabled, "true or false")
        # fewer than 11 points can step over a barrier's peak (Frankle et al. use 30)
        _check(isinstance(self.points, int) and 11 <= self.points <= 101, "instability.points", self.points,
               "an integer in [11, 101] (ends included)")
        _check(isinstance(self.bn_batches, int) and 1 <= self.bn_batches <= 1000, "instability.bn_batches",
               self.bn_batches, "an integer in [1, 1000]")
        _check(isinstance(self.test_size, int) and self.test_size >= 0, "instability.test_size", self.test_size,
               "an integer >= 0 (0 = the whole test set)")


@dataclass(frozen=True)
class TrialConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    concepts: ConceptConfig = field(default_factory=ConceptConfig)
    instability: InstabilityConfig = field(default_factory=InstabilityConfig)
    seed: int = 0  # initial weights, data order, augmentation, random pruning

    def __post_init__(self) -> None:
        # What depends on registries (names, dataset sizes, what a method allows) is lthray.validate's.
        _check(isinstance(self.seed, int) and self.seed >= 0, "seed", self.seed, "an integer >= 0")


_SECTIONS = {f.name: f.type for f in fields(TrialConfig) if f.name != "seed"}


def to_flat(cfg: TrialConfig) -> dict[str, Any]:
    """{'train.epochs': 4, ..., 'seed': 0}: the flat form Ray Tune and Optuna sample."""
    out: dict[str, Any] = {}
    for name in _SECTIONS:
        for k, v in dataclasses.asdict(getattr(cfg, name)).items():
            out[f"{name}.{k}"] = list(v) if isinstance(v, tuple) else v
    out["seed"] = cfg.seed
    return out


# Values that were renamed: configs and rows written before still read (the new name is used).
RENAMED: dict[str, dict[Any, Any]] = {"prune.method": {"stability": "movement_guided"}}


def from_flat(flat: dict[str, Any]) -> TrialConfig:
    """Inverse of `to_flat`; missing keys take defaults, unknown keys are an error, renamed values
    (RENAMED) read as their new names."""
    flat = {k: RENAMED.get(k, {}).get(v, v) if isinstance(v, str) else v for k, v in flat.items()}
    parts: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    seed = flat.get("seed", 0)
    defaults = TrialConfig()
    for key, v in flat.items():
        if key == "seed":
            continue
        sec, _, name = key.partition(".")
        known = {f.name for f in fields(getattr(defaults, sec))} if sec in parts else set()
        if name not in known:
            allowed = sorted(to_flat(defaults))
            raise ConfigError(f"unknown config key {key!r}; allowed: {', '.join(allowed)}")
        parts[sec][name] = tuple(v) if isinstance(v, list) else v
    sections = {sec: type(getattr(defaults, sec))(**kw) for sec, kw in parts.items()}
    return TrialConfig(**sections, seed=seed)


def replace(cfg: TrialConfig, **flat: Any) -> TrialConfig:
    """A copy of `cfg` with flat keys changed: replace(cfg, **{'prune.rate': 0.5})."""
    return from_flat({**to_flat(cfg), **flat})


def run_id(cfg: TrialConfig) -> str:
    """Stable id of a config: a hash of its non-default fields (so new defaulted fields keep old ids)."""
    default = to_flat(TrialConfig())
    diff = {k: v for k, v in to_flat(cfg).items() if default.get(k) != v}
    blob = json.dumps(diff, sort_keys=True, separators=(",", ":"))
    return "run_" + hashlib.sha256(blob.encode()).hexdigest()[:16]


def to_json(cfg: TrialConfig) -> str:
    return json.dumps(to_flat(cfg), sort_keys=True)
