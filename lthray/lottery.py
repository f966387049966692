"""The level loop of one trial, as a short driver over named stages (open_lth style):

    level 0: train_level (saving the rewind point at step k) -> measure (dense maps become the reference)
    level L: next_mask (prune the last level's weights, or prune_at_init) -> rewind (REWINDS)
             -> train_level under the mask [-> reinit copy] -> measure (vs dense) [-> instability]
    every level: publish = mask file + one result row, written atomically -> checkpoint (state.pt)
                 -> on_level(row)

A level whose checkpoint exists is skipped, so re-running a trial (after a crash, or in a resumed
sweep) continues from its last finished level and never trains a finished level again.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lthray import data as data_mod
from lthray import instability, mask_files, masks, results
from lthray.config import TrialConfig, run_id, to_json
from lthray.criteria import CRITERIA, METHODS, ScoreContext, scores_for
from lthray.explain import concepts as concepts_mod
from lthray.explain.cam import explain, fidelity_loss, gradcam
from lthray.explain.concept_sources import bank_for
from lthray.models import build
from lthray.models.common import CamModel
from lthray.results import GALLERY, LevelRecord
from lthray.rewind import REWINDS, Schedule
from lthray.storage import atomic_torch_save
from lthray.train import Diverged, TrainResult, evaluate, train

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
        rows = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()} for r in self.rows]
        atomic_torch_save({**self.__dict__, "rows": rows}, path)

    @classmethod
    def load(cls, path: Path) -> TrialState:
        # weights_only: a checkpoint is data, never code to unpickle
        return cls(**torch.load(path, map_location="cpu", weights_only=True))


def _state_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class Trial:
    """What every stage of one trial reads: built once by `setup`, then only `state` changes."""

    cfg: TrialConfig
    device: torch.device
    data: data_mod.Data
    model: CamModel
    guide_x: torch.Tensor  # fixed *training* images that guided criteria and the fidelity loss look at
    guide_y: torch.Tensor
    bank: concepts_mod.Bank | None
    identity: dict[str, Any]  # the row columns that are the same at every level
    state: TrialState


def setup(cfg: TrialConfig, state: TrialState, device: torch.device, *, sweep: str, trial_id: str) -> Trial:
    """Data on the device, the initial model, guide images, concept bank and the rows' fixed columns."""
    data = data_mod.load(cfg.data.dataset, cfg.data.probe_size, str(device), cfg.data.train_size, cfg.train.dtype)
    if not cfg.data.augment:  # a view of the same tensors whose spec asks for no shifts or flips
        data = dataclasses.replace(data, spec=dataclasses.replace(data.spec, pad=0, flip=False))
    model = build(cfg.model.name, data.spec.num_classes, cfg.seed, data.spec.channels, data.train_x.dtype).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    gi = data_mod.guide_idx(data, cfg.explain.guide_size)
    cc, rid = cfg.concepts, run_id(cfg)
    bank = bank_for(data, cc) if cc.enabled else None
    identity = {
        "sweep": sweep, "run_id": rid, "trial_id": trial_id or rid, "method": cfg.prune.method,
        "scope": cfg.prune.scope, "model": cfg.model.name, "dataset": cfg.data.dataset, "rewind": cfg.prune.rewind,
        "rewind_step": cfg.rewind_steps, "rewind_spec": str(cfg.prune.rewind_at),
        "guidance_weight": float(cfg.prune.guidance_weight), "lambda_fid": float(cfg.prune.lambda_fid),
        "seed": cfg.seed, "concept_bank": bank.name if bank is not None else "none",
        "git_sha": results.git_sha(), "config_json": to_json(cfg),
    }
    return Trial(cfg, device, data, model, data.train_x[gi], data.train_y[gi], bank, identity, state)


def _context(t: Trial, level: int, mask: masks.Mask) -> ScoreContext:
    st = t.state
    extras = {
        "data": t.data, "guide_x": t.guide_x, "guide_y": t.guide_y, "guide_maps": st.guide_maps,
        "pcbm": concepts_mod.PCBM(**st.pcbm) if st.pcbm else None, "concept_topk": t.cfg.concepts.topk,
        "start_weights": st.start,
    }
    return ScoreContext(t.model, masks.to_device(mask, t.device), t.cfg.seed, level, extras)


def prune(t: Trial, level: int) -> masks.Mask:
    """Score the previous level's trained weights with the trial's method and remove a fraction."""
    cfg = t.cfg
    ctx = _context(t, level, t.state.mask)
    scores = scores_for(cfg.prune.method, ctx, cfg.prune.guidance_weight)
    if cfg.prune.target_density is not None:  # a declared end point: every level's density exact
        return masks.prune_to(scores, ctx.mask, cfg.prune.density_at(level), cfg.prune.scope)
    return masks.prune(scores, ctx.mask, cfg.prune.rate_per_level, cfg.prune.scope)


def prune_at_init(t: Trial, level: int) -> masks.Mask:
    """Pruning at initialisation: score the level's starting weights (the rewind point; the
    initialisation when k = 0) and prune from dense to the level's nominal density, in one round or, for
    an iterative method, in prune.pai_iterations rounds on the exponential schedule density^(r/R) of
    Tanaka et al. 2020, rescoring the surviving weights each round."""
    cfg, method = t.cfg, METHODS.get(t.cfg.prune.method)
    t.model.load_state_dict(t.state.rewind)
    criterion, target = CRITERIA.get(method.base), cfg.prune.density_at(level)
    rounds = cfg.prune.pai_iterations if method.iterative else 1
    ctx = _context(t, level, masks.ones(t.model))  # built once: only the mask changes between rounds
    for r in range(1, rounds + 1):
        mask = masks.prune(criterion(ctx), ctx.mask, masks.fraction_to(ctx.mask, target ** (r / rounds)),
                           cfg.prune.scope)
        ctx = dataclasses.replace(ctx, mask=mask)
    return ctx.mask


def next_mask(t: Trial, level: int) -> masks.Mask:
    """The mask of pruned level `level` (the model holds the previous level's trained weights)."""
    return prune_at_init(t, level) if METHODS.get(t.cfg.prune.method).at_init else prune(t, level)


def _fidelity_term(t: Trial) -> Callable[[torch.nn.Module], torch.Tensor]:
    """Explanation-preserving retraining: lambda_fid * (1 - cos(CAM, dense CAM)) on a rotating slice of
    the guide (training) images; test images never steer training."""
    assert t.state.guide_maps is not None
    maps, n, lam = t.state.guide_maps.to(t.guide_x.device), t.cfg.explain.fid_batch, t.cfg.prune.lambda_fid
    calls = [0]

    def term(model: torch.nn.Module) -> torch.Tensor:
        i = (calls[0] * n) % len(t.guide_x)
        calls[0] += 1
        sl = slice(i, i + n)
        return lam * fidelity_loss(model, model.cam_layer, t.guide_x[sl], t.guide_y[sl], maps[sl])

    return term


def train_level(t: Trial, level: int, mask: masks.Mask, schedule: Schedule,
                on_step: Callable[[int], None] | None = None, data_seed: int | None = None) -> TrainResult:
    """Train the schedule under `mask` (with the fidelity loss on pruned levels); raises Diverged.
    `data_seed` replaces the trial's seed for the data order and augmentation (a second copy)."""
    extra = _fidelity_term(t) if t.cfg.prune.lambda_fid > 0 and level > 0 else None
    seed = t.cfg.seed if data_seed is None else data_seed
    return train(t.model, t.data, t.cfg.train, mask=mask, start=schedule.start, end=schedule.end,
                 seed=seed, constant_lr=schedule.constant_lr, on_step=on_step, extra_loss=extra)


def _concept_columns(t: Trial) -> dict[str, Any]:
    """Fit this level's PCBM and compare its concepts with the dense model's (also updates state)."""
    if t.bank is None:
        return {}
    cc, st, data, bank = t.cfg.concepts, t.state, t.data, t.bank
    idx = slice(None) if bank.train_idx is None else bank.train_idx.to(data.train_x.device)
    pcbm = concepts_mod.fit_pcbm(concepts_mod.features(t.model, data.train_x[idx]), bank.train_sim,
                                 data.train_y[idx], steps=cc.proj_steps, C=cc.C, l1_ratio=cc.l1_ratio, seed=t.cfg.seed)
    test_feats = concepts_mod.features(t.model, data.test_x)
    acc = float((pcbm.logits(test_feats).argmax(1).cpu() == data.test_y.cpu()).float().mean())
    st.pcbm = pcbm.to_state()
    if not st.dense_pcbm:
        st.dense_pcbm = pcbm.to_state()
    dense = concepts_mod.PCBM(**st.dense_pcbm)
    top = pcbm.top_concepts(cc.topk)
    names = [f"{data.class_names[c]}: " + " | ".join(bank.concepts[j] for j in top[c]) for c in range(len(top))]
    return {
        "pcbm_acc": acc,
        "concept_topk_overlap": concepts_mod.topk_overlap(top, dense.top_concepts(cc.topk)),
        "concept_weight_spearman": concepts_mod.weight_spearman(pcbm.coef, dense.coef),
        "top_concepts": names,
    }


def measure(t: Trial, level: int) -> dict[str, Any]:
    """Test accuracy, Grad-CAM against the dense maps, faithfulness and concepts of the trained model.
    At level 0 the maps it computes become the reference of every later level."""
    acc, loss = evaluate(t.model, t.data.test_x, t.data.test_y)
    t0, st = time.perf_counter(), t.state
    ref = None if st.dense_maps is None else st.dense_maps.numpy()
    rep = explain(t.model, t.model.cam_layer, t.data.probe_x, t.data.probe_y, ref, t.cfg.explain)
    if level == 0:
        st.dense_maps = torch.from_numpy(np.ascontiguousarray(rep.maps))
        if METHODS.get(t.cfg.prune.method).guide == "cam" or t.cfg.prune.lambda_fid > 0:  # their only readers
            st.guide_maps = torch.from_numpy(gradcam(t.model, t.model.cam_layer, t.guide_x, t.guide_y))
    cols = {"test_acc": acc, "test_loss": loss, "cam_spearman": rep.spearman, "cam_iou": rep.iou,
            "cam_faithfulness": rep.faithfulness, "probe_cams": rep.maps[:GALLERY].ravel().tolist(),
            **_concept_columns(t)}
    return {**cols, "explain_seconds": time.perf_counter() - t0}


def reinit_copy(t: Trial, level: int) -> dict[str, torch.Tensor]:
    """The random-reinitialisation control (Frankle & Carbin 2019): load a fresh initialisation drawn
    with another seed (one per level) into the model, to be trained under the ticket's mask on the
    ticket's schedule. Returns that starting state."""
    cfg = t.cfg
    fresh = build(cfg.model.name, t.data.spec.num_classes, data_mod.step_seed(cfg.seed, 3, level),
                  t.data.spec.channels, t.data.train_x.dtype)
    t.model.load_state_dict(fresh.state_dict())
    return _state_cpu(t.model)


def instability_columns(t: Trial, level: int, mask: masks.Mask, start: dict[str, torch.Tensor],
                        schedule: Schedule) -> tuple[dict[str, Any], float]:
    """Train a second copy of the measured network from its `start` under the same mask and schedule
    with another data order, then measure the test error along the line between the two copies.
    Returns the columns and the copy's training seconds; the model is left holding the first copy."""
    own = _state_cpu(t.model)
    t.model.load_state_dict(start)
    tr = train_level(t, level, mask, schedule, data_seed=data_mod.step_seed(t.cfg.seed, 4, level))
    other = _state_cpu(t.model)
    errors = instability.error_path(t.model, own, other, t.data, t.cfg.instability,
                                    batch_size=t.cfg.train.batch_size, seed=t.cfg.seed)
    return {"instability_barrier": instability.barrier(errors), "instability_errors": errors}, tr.seconds


def train_and_measure(t: Trial, level: int, mask: masks.Mask, schedule: Schedule, start: dict[str, torch.Tensor],
                      on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train the level, measure the network the row describes and return the row's metric columns.

    The ticket's own lineage is always trained (the next level prunes it). The reinit control then
    trains and measures a freshly initialised copy instead, and puts the lineage back afterwards.
    Raises Diverged."""
    cfg, method = t.cfg, METHODS.get(t.cfg.prune.method)
    seconds = train_level(t, level, mask, schedule, on_step).seconds
    # Copy 2 of the instability analysis starts where this level's training began (`start`); at level 0
    # that is the rewind point k, saved during the training just done, and it trains from k.
    if level == 0:
        start, schedule = t.state.rewind, Schedule(cfg.rewind_steps, cfg.total_steps)
    lineage = None
    if method.reinit and level > 0:
        lineage = _state_cpu(t.model)
        start = reinit_copy(t, level)
        seconds += train_level(t, level, mask, schedule).seconds
    cols = measure(t, level)
    if cfg.instability.enabled:
        t0 = time.perf_counter()
        more, copy_seconds = instability_columns(t, level, mask, start, schedule)
        seconds += copy_seconds
        cols = {**cols, **more, "explain_seconds": cols["explain_seconds"] + time.perf_counter() - t0 - copy_seconds}
    if lineage is not None:
        t.model.load_state_dict(lineage)
    return {**cols, "train_seconds": seconds}


def publish(t: Trial, record: LevelRecord, mask: masks.Mask, start_weights: dict[str, torch.Tensor],
            results_dir: str | Path, workdir: Path) -> dict[str, Any]:
    """Write the level's row (a no-op if it exists), then the checkpoint that marks the level done."""
    row = record.to_row()
    mask_files.write(results_dir, record.run_id, record.level, mask)  # before the row: a row implies its mask
    results.write_row(results_dir, row)
    st = t.state
    st.start, st.level, st.mask = start_weights, record.level, {n: m.cpu() for n, m in mask.items()}
    st.weights = _state_cpu(t.model)
    st.rows.append(row)
    st.save(workdir / STATE)
    return row


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
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = TrialState.load(workdir / STATE) if (workdir / STATE).exists() else TrialState()
    device = torch.device(device) if device is not None else default_device()
    t = setup(cfg, state, device, sweep=sweep, trial_id=trial_id)
    for level in range(state.level + 1, cfg.prune.levels + 1):
        if state.diverged:
            break
        on_step = None
        if level == 0:
            mask, schedule = masks.ones(t.model), Schedule(0, cfg.total_steps)

            def on_step(step: int) -> None:  # the rewind point: the weights after k steps
                if step == cfg.rewind_steps:
                    state.rewind = _state_cpu(t.model)
        else:
            t.model.load_state_dict(state.weights)
            mask = next_mask(t, level)
            schedule = REWINDS.get(cfg.prune.rewind)(t.model, state.rewind, cfg)
        start_weights = _state_cpu(t.model)
        fixed = {**t.identity, "level": level, "density": masks.density(mask),
                 "train_steps": schedule.end - schedule.start}
        try:
            record = LevelRecord(**fixed, status="ok", **train_and_measure(t, level, mask, schedule,
                                                                                  start_weights, on_step))
        except Diverged:
            state.diverged = True
            record = LevelRecord(**fixed, status="diverged", train_seconds=0.0, explain_seconds=0.0)
        row = publish(t, record, mask, start_weights, results_dir, workdir)
        if on_level is not None:
            on_level(row)
    return state.rows
