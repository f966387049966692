"""What every step of one trial reads, built once: data on the device, the initial model, the guide
images, the concept bank and the row columns that are the same at every level."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lthray import data as data_mod
from lthray import masks, results, schedule
from lthray.config import TrialConfig, run_id, to_json
from lthray.explain import concepts as concepts_mod
from lthray.explain.concept_sources import bank_for
from lthray.methods import METHODS, Method, ScoreContext
from lthray.models import build
from lthray.models.common import CamModel
from lthray.trial.state import TrialState, Weights


def default_device() -> torch.device:
    """CUDA when present (a Ray trial only sees the GPUs it was given), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def state_cpu(model: torch.nn.Module) -> Weights:
    """A copy of the model's weights and buffers on the CPU (what checkpoints and caches keep)."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class Trial:
    """What every step of one trial reads: built once by `setup` and never changed afterwards
    (the model's weights aside)."""

    cfg: TrialConfig
    method: Method
    device: torch.device
    data: data_mod.Data
    model: CamModel
    guide_x: torch.Tensor  # fixed *training* images that guided criteria and the fidelity loss look at
    guide_y: torch.Tensor
    bank: concepts_mod.Bank | None
    identity: dict[str, Any]  # the row columns that are the same at every level
    objects: np.ndarray | None  # the probe images' object masks (None where the dataset has none)

    @property
    def needs_guide_maps(self) -> bool:
        return self.method.needs.dense_cams or self.cfg.prune.lambda_fid > 0  # their only readers

    @property
    def needs_teacher_logits(self) -> bool:
        return self.method.needs.dense_logits  # the distillation arm's teacher


def identity_columns(cfg: TrialConfig, bank: concepts_mod.Bank | None, sweep: str, trial_id: str) -> dict[str, Any]:
    """The row columns every level of the trial shares."""
    rid = run_id(cfg)
    return {
        "sweep": sweep, "run_id": rid, "trial_id": trial_id or rid, "method": cfg.prune.method,
        "scope": cfg.prune.scope, "model": cfg.model.name, "dataset": cfg.data.dataset, "rewind": cfg.prune.rewind,
        "rewind_step": schedule.rewind_steps(cfg), "rewind_spec": str(cfg.prune.rewind_at),
        "guidance_weight": float(cfg.prune.guidance_weight), "lambda_fid": float(cfg.prune.lambda_fid),
        "kd_weight": float(cfg.prune.kd_weight), "kd_temperature": float(cfg.prune.kd_temperature),
        "seed": cfg.seed, "concept_bank": bank.name if bank is not None else "none",
        "git_sha": results.git_sha(), "config_json": to_json(cfg),
    }


def setup(cfg: TrialConfig, device: torch.device, *, sweep: str, trial_id: str) -> Trial:
    """Data on the device, the initial model, guide images, concept bank and the rows' fixed columns."""
    data = data_mod.load(cfg.data.dataset, cfg.data.probe_size, str(device), cfg.data.train_size, cfg.train.dtype)
    schedule.check_loaded(cfg, len(data.train_x))
    if not cfg.data.augment:  # a view of the same tensors whose spec asks for no shifts or flips
        data = dataclasses.replace(data, spec=dataclasses.replace(data.spec, pad=0, flip=False))
    model = build(cfg.model.name, data.spec.num_classes, cfg.seed, data.spec.channels, data.train_x.dtype).to(device)
    model = model.to(memory_format=data_mod.memory_format(data.train_x.dtype))
    guide = data_mod.guide_idx(data, cfg.explain.guide_size)
    bank = bank_for(data, cfg.concepts) if cfg.concepts.enabled else None
    return Trial(cfg, METHODS.get(cfg.prune.method), device, data, model, data.train_x[guide], data.train_y[guide],
                 bank, identity_columns(cfg, bank, sweep, trial_id), data_mod.object_masks(data, data.probe_x))


def context(trial: Trial, state: TrialState, level: int, mask: masks.Mask) -> ScoreContext:
    """The criterion inputs the trial's method declared in its `Needs`, and nothing else."""
    needs = trial.method.needs
    return ScoreContext(
        trial.model, masks.to_device(mask, trial.device), trial.cfg.seed, level,
        guide_x=trial.guide_x if needs.guide_images or trial.method.at_init else None,
        guide_y=trial.guide_y if needs.guide_images or trial.method.at_init else None,
        guide_maps=state.guide_maps if needs.dense_cams else None,
        pcbm=concepts_mod.PCBM(**state.pcbm) if needs.pcbm and state.pcbm else None,
        concept_topk=trial.cfg.concepts.topk,
        start_weights=state.began_from if needs.start_weights else None,
    )
