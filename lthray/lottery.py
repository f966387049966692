"""The level loop of one trial: level 0 trains dense; level L prunes, rewinds, retrains, explains.

    level 0: train dense (saving the rewind point at step k) -> evaluate -> explain (dense maps = reference)
    level L: scores -> mask = prune(scores, mask) -> rewind -> train under mask -> evaluate -> explain vs dense
    every level: one result row, written atomically -> checkpoint (state.pt) -> on_level(row)

A level whose checkpoint exists is skipped, so re-running a trial (after a crash, or in a resumed
sweep) continues from its last finished level and never trains a finished level again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lthray import data as data_mod
from lthray import masks, results
from lthray.config import TrialConfig, run_id, to_json
from lthray.criteria import METHODS, ScoreContext, scores_for
from lthray.explain import concepts as concepts_mod
from lthray.explain.cam import explain, fidelity_loss, gradcam
from lthray.models import build
from lthray.results import GALLERY
from lthray.train import Diverged, evaluate, train

STATE = "state.pt"


def default_device() -> torch.device:
    """CUDA when present (a Ray trial only sees the GPUs it was given), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrialState:
    """What a trial needs to continue after its last finished level (saved as plain tensors)."""

    level: int = -1  # last finished level
    mask: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # trained weights of `level`
    rewind: dict[str, torch.Tensor] = field(default_factory=dict)  # weights + BN buffers after k steps
    dense_maps: torch.Tensor | None = None  # level 0's Grad-CAM maps: the reference for every level
    guide_maps: torch.Tensor | None = None  # level 0's maps on the guide (training) images
    start: dict[str, torch.Tensor] = field(default_factory=dict)  # weights when `level`'s training began
    pcbm: dict[str, torch.Tensor] = field(default_factory=dict)  # PCBM of `level`'s backbone
    dense_pcbm: dict[str, torch.Tensor] = field(default_factory=dict)  # PCBM of the dense backbone
    diverged: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        rows = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in self.rows]
        torch.save({**self.__dict__, "rows": rows}, tmp)
        os.replace(tmp, path)  # a crash leaves the old checkpoint or the new one, never half of one

    @classmethod
    def load(cls, path: Path) -> TrialState:
        # weights_only: a checkpoint is data, never code to unpickle
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


def _state_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


_METRICS = ("test_acc", "test_loss", "cam_spearman", "cam_iou", "cam_faithfulness", "pcbm_acc",
            "concept_topk_overlap", "concept_weight_spearman")


def _fidelity_term(cfg: TrialConfig, gx: torch.Tensor, gy: torch.Tensor, guide_maps: torch.Tensor | None):
    """Explanation-preserving retraining: lambda_fid * (1 - cos(CAM, dense CAM)) on a rotating slice of
    the guide (training) images; test images never steer training."""
    assert guide_maps is not None
    maps, n, lam = guide_maps.to(gx.device), cfg.explain.fid_batch, cfg.prune.lambda_fid
    calls = [0]

    def term(model: torch.nn.Module) -> torch.Tensor:
        i = (calls[0] * n) % len(gx)
        calls[0] += 1
        sl = slice(i, i + n)
        return lam * fidelity_loss(model, model.cam_layer, gx[sl], gy[sl], maps[sl])

    return term


def _concept_columns(cfg: TrialConfig, model: torch.nn.Module, data: data_mod.Data,
                     bank: concepts_mod.Bank | None, state: TrialState) -> dict[str, Any]:
    """Fit this level's PCBM and compare its concepts with the dense model's (also updates state)."""
    if bank is None:
        return {"pcbm_acc": None, "concept_topk_overlap": None, "concept_weight_spearman": None,
                "top_concepts": None}
    cc = cfg.concepts
    feats = concepts_mod.features(model, data.train_x)
    pcbm = concepts_mod.fit_pcbm(feats, bank.train_sim, data.train_y, steps=cc.proj_steps, C=cc.C,
                                 l1_ratio=cc.l1_ratio, seed=cfg.seed)
    test_feats = concepts_mod.features(model, data.test_x)
    acc = float((pcbm.logits(test_feats).argmax(1).cpu() == data.test_y.cpu()).float().mean())
    state.pcbm = pcbm.to_state()
    if not state.dense_pcbm:
        state.dense_pcbm = pcbm.to_state()
    dense = concepts_mod.PCBM(**state.dense_pcbm)
    top = pcbm.top_concepts(cc.topk)
    names = [f"{data.class_names[c]}: " + " | ".join(bank.concepts[j] for j in top[c]) for c in range(len(top))]
    return {
        "pcbm_acc": acc,
        "concept_topk_overlap": concepts_mod.topk_overlap(top, dense.top_concepts(cc.topk)),
        "concept_weight_spearman": concepts_mod.weight_spearman(pcbm.coef, dense.coef),
        "top_concepts": names,
    }


def run_trial(
    cfg: TrialConfig,
    workdir: str | Path,
    results_dir: str | Path,
    *,
    sweep: str = "",
    trial_id: str = "",
    device: torch.device | str | None = None,
    on_level: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or continue) every level of `cfg`; returns the rows of all finished levels."""
    device = torch.device(device) if device is not None else default_device()
    workdir, rid = Path(workdir), run_id(cfg)
    workdir.mkdir(parents=True, exist_ok=True)
    state = TrialState.load(workdir / STATE) if (workdir / STATE).exists() else TrialState()
    data = data_mod.load(cfg.data.dataset, cfg.data.probe_size, str(device))
    model = build(cfg.model.name, data.spec.num_classes, cfg.seed).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    total, k = cfg.total_steps, cfg.rewind_steps
    px, py = data.probe_x, data.probe_y
    gi = data_mod.guide_idx(data, cfg.explain.guide_size)
    gx, gy = data.train_x[gi], data.train_y[gi]
    cc = cfg.concepts
    bank = concepts_mod.concept_bank(data, cc.clip_model, cc.clip_pretrained) if cc.enabled else None
    base_row = {
        "sweep": sweep, "run_id": rid, "trial_id": trial_id or rid, "method": cfg.prune.method,
        "scope": cfg.prune.scope, "model": cfg.model.name, "dataset": cfg.data.dataset, "rewind": cfg.prune.rewind,
        "rewind_step": k, "guidance_weight": float(cfg.prune.guidance_weight), "seed": cfg.seed,
        "lambda_fid": float(cfg.prune.lambda_fid),
        "concept_bank": concepts_mod.bank_name(cc.clip_model, cc.clip_pretrained) if cc.enabled else "none",
        "git_sha": results.git_sha(), "config_json": to_json(cfg),
    }

    for level in range(state.level + 1, cfg.prune.levels + 1):
        if state.diverged:
            break
        if level == 0:
            mask = masks.ones(model)

            def keep_rewind(step: int) -> None:
                if step == k:
                    state.rewind = _state_cpu(model)

            start, end, lr, hook, extra = 0, total, None, keep_rewind, None
        else:
            model.load_state_dict(state.weights)
            extras = {
                "data": data, "guide_x": gx, "guide_y": gy, "guide_maps": state.guide_maps,
                "pcbm": concepts_mod.PCBM(**state.pcbm) if state.pcbm else None, "concept_topk": cc.topk,
                "start_weights": state.start,
            }
            ctx = ScoreContext(model, masks.to_device(state.mask, device), cfg.seed, level, extras)
            scores = scores_for(cfg.prune.method, ctx, cfg.prune.guidance_weight)
            mask = masks.prune(scores, ctx.mask, cfg.prune.rate_per_level, cfg.prune.scope)
            if cfg.prune.rewind == "weight":  # weights *and* BN buffers back to step k
                model.load_state_dict(state.rewind)
            # lr: keep the trained weights, replay the schedule from step k (Renda et al. 2020);
            # finetune: keep them and train the same number of steps at the final, small rate.
            start, end, hook = k, total, None
            lr = cfg.train.lr * cfg.train.final_lr if cfg.prune.rewind == "finetune" else None
            extra = _fidelity_term(cfg, gx, gy, state.guide_maps) if cfg.prune.lambda_fid > 0 else None

        row = {**base_row, "level": level, "density": masks.density(mask), "status": "ok", "train_steps": end - start}
        start_weights = _state_cpu(model)
        try:
            tr = train(model, data, cfg.train, mask=mask, start=start, end=end, seed=cfg.seed, constant_lr=lr,
                       on_step=hook, extra_loss=extra)
        except Diverged:
            state.diverged = True
            row.update({c: None for c in _METRICS}, status="diverged", top_concepts=None, probe_cams=None,
                       train_seconds=0.0, explain_seconds=0.0)
        else:
            acc, loss = evaluate(model, data.test_x, data.test_y)
            t0 = time.perf_counter()
            ref = None if state.dense_maps is None else state.dense_maps.numpy()
            rep = explain(model, model.cam_layer, px, py, ref, cfg.explain)
            if level == 0:
                state.dense_maps = torch.from_numpy(np.ascontiguousarray(rep.maps))
                if METHODS.get(cfg.prune.method).guide == "cam" or cfg.prune.lambda_fid > 0:  # their only readers
                    state.guide_maps = torch.from_numpy(gradcam(model, model.cam_layer, gx, gy))
            row.update(test_acc=acc, test_loss=loss, cam_spearman=rep.spearman, cam_iou=rep.iou,
                       cam_faithfulness=rep.faithfulness, probe_cams=rep.maps[:GALLERY].ravel().tolist())
            row.update(_concept_columns(cfg, model, data, bank, state))
            row.update(train_seconds=tr.seconds, explain_seconds=time.perf_counter() - t0)
        results.write_row(results_dir, row)  # no-op if this level's row already exists
        state.start = start_weights
        state.level, state.mask = level, {n: m.cpu() for n, m in mask.items()}
        state.weights = _state_cpu(model)
        state.rows.append(row)
        state.save(workdir / STATE)
        if on_level is not None:
            on_level(row)
    return state.rows
