"""The level loop of one trial, as a short driver over named stages (open_lth style):

    level 0: train (saving the rewind point at step k) -> measure (its maps become the reference)
    level L: next_mask (prune the last level's weights, or prune_at_init) -> rewind (REWINDS)
             -> train under the mask [-> reinit copy] -> measure (vs dense) [-> instability]
    every level: publish = mask file + one result row, written atomically -> checkpoint (state.pt)
                 -> on_level(row)

Each stage returns what it computed; `advance` is the one place the trial's state changes. The method's
`Needs` decide what is computed for its criteria (no stage compares method names). A level the
checkpoint records is skipped, so re-running a trial (after a crash, or in a resumed sweep) continues
from its last finished level and never trains a finished level again.

Words: `began_from` is the weights a level's training started from; a `Schedule`'s start is a step.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lthray import data as data_mod
from lthray import instability, mask_files, masks, results, schedule, share, storage, validate
from lthray.config import TrialConfig, run_id, to_json
from lthray.explain import concepts as concepts_mod
from lthray.explain import localisation, sanity
from lthray.explain.cam import explain, faithfulness, fidelity_loss, gradcam
from lthray.explain.concept_sources import bank_for
from lthray.explain.lrp import lrp_maps
from lthray.explain.rank import spearman
from lthray.methods import CRITERIA, METHODS, Method, ScoreContext, scores_for
from lthray.models import build
from lthray.models.common import CamModel
from lthray.results import GALLERY, LevelRecord
from lthray.rewind import REWINDS
from lthray.schedule import Schedule
from lthray.storage import atomic_write
from lthray.train import Diverged, TrainResult, evaluate, evaluate_with_features, train

STATE = "state.pt"
PREVIOUS = "state.prev.pt"  # the checkpoint before the last: a corrupt STATE costs one level, not the trial
_MAGIC = b"lthray-state-v1\n"  # then the sha256 of the torch.save bytes, then those bytes
Weights = dict[str, torch.Tensor]
_LEGACY_STATE = {"start": "began_from"}  # state.pt keys renamed since (old checkpoints still load)


def default_device() -> torch.device:
    """CUDA when present (a Ray trial only sees the GPUs it was given), else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class TrialState:
    """What a trial needs to continue after its last finished level (saved as plain tensors). The rows
    themselves live in the results folder only."""

    level: int = -1  # last finished level
    mask: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: Weights = field(default_factory=dict)  # trained weights of `level` (the lineage)
    rewind: Weights = field(default_factory=dict)  # weights + BN buffers after k steps
    dense_maps: torch.Tensor | None = None  # level 0's Grad-CAM maps: the reference for every level
    dense_lrp: torch.Tensor | None = None  # level 0's LRP maps (explain.lrp): LRP's reference
    guide_maps: torch.Tensor | None = None  # level 0's maps on the guide (training) images
    began_from: Weights = field(default_factory=dict)  # weights when `level`'s training began
    pcbm: dict[str, torch.Tensor] = field(default_factory=dict)  # PCBM of `level`'s backbone
    dense_pcbm: dict[str, torch.Tensor] = field(default_factory=dict)  # PCBM of the dense backbone
    diverged: bool = False

    def finished(self, levels: int) -> bool:
        return results.trial_finished(levels, set(range(self.level + 1)), self.diverged)

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically with a checksum; the one it replaces becomes PREVIOUS."""
        buf = io.BytesIO()
        torch.save(dict(self.__dict__), buf)
        blob = buf.getvalue()
        if path.exists():
            os.replace(path, path.with_name(PREVIOUS))
        atomic_write(path, lambda fh: fh.write(_MAGIC + hashlib.sha256(blob).digest() + blob))

    @classmethod
    def load(cls, path: Path) -> TrialState:
        """The checkpoint at `path`; CorruptState naming it when it is truncated, altered or not one."""
        data = path.read_bytes()
        if data.startswith(_MAGIC):
            digest, blob = data[len(_MAGIC) : len(_MAGIC) + 32], data[len(_MAGIC) + 32 :]
            if hashlib.sha256(blob).digest() != digest:
                raise CorruptState(f"{path}: checksum mismatch ({len(data)} bytes; truncated or altered)")
        else:
            blob = data  # written before checksums (no magic): torch's own zip checks only
        try:  # weights_only: a checkpoint is data, never code to unpickle
            raw = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        except Exception as e:
            raise CorruptState(f"{path}: not a readable checkpoint ({type(e).__name__}: {e})") from None
        raw = {_LEGACY_STATE.get(k, k): v for k, v in raw.items() if k != "rows"}  # rows: results folder
        return cls(**raw)


class CorruptState(ValueError):
    """A checkpoint that cannot be trusted: truncated, altered, or not a checkpoint."""


def resume_state(workdir: Path, say: Callable[[str], None]) -> TrialState:
    """The newest readable checkpoint of `workdir` (STATE, else PREVIOUS, else a fresh start), saying in
    one line which unreadable file it passed over and which level is recomputed."""
    for name in (STATE, PREVIOUS):
        path = workdir / name
        if not path.exists():
            continue
        try:
            st = TrialState.load(path)
        except CorruptState as e:
            say(f"lthray: {e}; passing over it")
            continue
        if name == PREVIOUS:
            say(f"lthray: continuing from {path} (level {st.level}): level {st.level + 1} is recomputed")
        return st
    if (workdir / STATE).exists() or (workdir / PREVIOUS).exists():
        say(f"lthray: no readable checkpoint in {workdir}: the trial restarts from level 0 (its finished rows "
            "stay, and are not written twice)")
    return TrialState()


def last_level(path: Path) -> int:
    """The last finished level a checkpoint records (-1 without one, or an unreadable one): a level is
    finished once its checkpoint is written, which `run_trial` does after the level's mask file and row."""
    try:
        return TrialState.load(path).level if path.exists() else -1
    except CorruptState:
        return -1


def _state_cpu(model: torch.nn.Module) -> Weights:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclass
class Trial:
    """What every stage of one trial reads: built once by `setup` and never changed afterwards
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


def setup(cfg: TrialConfig, device: torch.device, *, sweep: str, trial_id: str) -> Trial:
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
        "rewind_step": schedule.rewind_steps(cfg), "rewind_spec": str(cfg.prune.rewind_at),
        "guidance_weight": float(cfg.prune.guidance_weight), "lambda_fid": float(cfg.prune.lambda_fid),
        "seed": cfg.seed, "concept_bank": bank.name if bank is not None else "none",
        "git_sha": results.git_sha(), "config_json": to_json(cfg),
    }
    return Trial(cfg, METHODS.get(cfg.prune.method), device, data, model, data.train_x[gi], data.train_y[gi],
                 bank, identity, data_mod.object_masks(data, data.probe_x))


def context(t: Trial, st: TrialState, level: int, mask: masks.Mask) -> ScoreContext:
    """The criterion inputs the trial's method declared in its `Needs`, and nothing else."""
    needs = t.method.needs
    return ScoreContext(
        t.model, masks.to_device(mask, t.device), t.cfg.seed, level,
        guide_x=t.guide_x if needs.guide_images or t.method.at_init else None,
        guide_y=t.guide_y if needs.guide_images or t.method.at_init else None,
        guide_maps=st.guide_maps if needs.dense_cams else None,
        pcbm=concepts_mod.PCBM(**st.pcbm) if needs.pcbm and st.pcbm else None,
        concept_topk=t.cfg.concepts.topk,
        start_weights=st.began_from if needs.start_weights else None,
    )


def prune(t: Trial, st: TrialState, level: int) -> masks.Mask:
    """Score the previous level's trained weights (the model holds them) and remove a fraction."""
    cfg = t.cfg
    ctx = context(t, st, level, st.mask)
    scores = scores_for(cfg.prune.method, ctx, cfg.prune.guidance_weight)
    if cfg.prune.target_density is not None:  # a declared end point: every level's density exact
        return masks.prune_to(scores, ctx.mask, cfg.prune.density_at(level), cfg.prune.scope)
    return masks.prune(scores, ctx.mask, cfg.prune.rate_per_level, cfg.prune.scope)


def prune_at_init(t: Trial, st: TrialState, level: int) -> masks.Mask:
    """Pruning at initialisation: score the level's starting weights (the rewind point; the
    initialisation when k = 0) and prune from dense to the level's nominal density, in one round or, for
    an iterative method, in prune.pai_iterations rounds on the exponential schedule density^(r/R) of
    Tanaka et al. 2020, rescoring the surviving weights each round. Leaves the model at the rewind point."""
    cfg = t.cfg
    t.model.load_state_dict(st.rewind)
    criterion, target = CRITERIA.get(t.method.base), cfg.prune.density_at(level)
    rounds = cfg.prune.pai_iterations if t.method.iterative else 1
    ctx = context(t, st, level, masks.ones(t.model))  # built once: only the mask changes between rounds
    for r in range(1, rounds + 1):
        mask = masks.prune(criterion(ctx), ctx.mask, masks.fraction_to(ctx.mask, target ** (r / rounds)),
                           cfg.prune.scope)
        ctx = dataclasses.replace(ctx, mask=mask)
    return ctx.mask


def next_mask(t: Trial, st: TrialState, level: int) -> masks.Mask:
    """The mask of pruned level `level` (the model holds the previous level's trained weights)."""
    return prune_at_init(t, st, level) if t.method.at_init else prune(t, st, level)


def _fidelity_term(t: Trial, guide_maps: torch.Tensor) -> Callable[[torch.nn.Module], torch.Tensor]:
    """Explanation-preserving retraining: lambda_fid * (1 - cos(CAM, dense CAM)) on a rotating slice of
    the guide (training) images; test images never steer training."""
    maps, n, lam = guide_maps.to(t.guide_x.device), t.cfg.explain.fid_batch, t.cfg.prune.lambda_fid
    calls = [0]

    def term(model: torch.nn.Module) -> torch.Tensor:
        i = (calls[0] * n) % len(t.guide_x)
        calls[0] += 1
        sl = slice(i, i + n)
        return lam * fidelity_loss(model, model.cam_layer, t.guide_x[sl], t.guide_y[sl], maps[sl])

    return term


def train_level(t: Trial, st: TrialState, level: int, mask: masks.Mask, sched: Schedule,
                on_step: Callable[[int], None] | None = None, data_seed: int | None = None) -> TrainResult:
    """Train the schedule under `mask` (with the fidelity loss on pruned levels); raises Diverged.
    `data_seed` replaces the trial's seed for the data order and augmentation (a second copy)."""
    extra = None
    if t.cfg.prune.lambda_fid > 0 and level > 0:
        assert st.guide_maps is not None  # computed at level 0 whenever lambda_fid > 0
        extra = _fidelity_term(t, st.guide_maps)
    seed = t.cfg.seed if data_seed is None else data_seed
    return train(t.model, t.data, t.cfg.train, mask=mask, start=sched.start, end=sched.end,
                 seed=seed, constant_lr=sched.constant_lr, on_step=on_step, extra_loss=extra)


@dataclass(frozen=True)
class Concepts:
    """This level's concept bottleneck and its columns."""

    pcbm: dict[str, torch.Tensor]
    cols: dict[str, Any]


def concept_columns(t: Trial, dense_pcbm: dict[str, torch.Tensor], test_feats: torch.Tensor) -> Concepts:
    """Fit the PCBM of the model's backbone and compare its concepts with the dense model's (`dense_pcbm`;
    empty at level 0, where this PCBM is the dense one); `test_feats` are the model's features of the test
    images (`train.evaluate_with_features`), for the PCBM's test accuracy. Needs the trial's concept bank."""
    cc, data, bank = t.cfg.concepts, t.data, t.bank
    assert bank is not None, "concept_columns needs a concept bank (measure calls it only with one)"
    idx = slice(None) if bank.train_idx is None else bank.train_idx.to(data.train_x.device)
    train_feats = concepts_mod.features(t.model, data.train_x[idx])
    pcbm = concepts_mod.fit_pcbm(train_feats, bank.train_sim,
                                 data.train_y[idx], steps=cc.proj_steps, C=cc.C, l1_ratio=cc.l1_ratio, seed=t.cfg.seed)
    acc = float((pcbm.logits(test_feats).argmax(1).cpu() == data.test_y.cpu()).float().mean())
    dense = concepts_mod.PCBM(**dense_pcbm) if dense_pcbm else pcbm
    top = pcbm.top_concepts(cc.topk)
    names = [f"{data.class_names[c]}: " + " | ".join(bank.concepts[j] for j in top[c]) for c in range(len(top))]
    refit = {}
    if not dense_pcbm:  # level 0: the refit noise floor of every later level's concept shift
        other = refit_pcbm(t, train_feats, data.train_y[idx])
        refit = {"concept_refit_overlap": concepts_mod.topk_overlap(top, other.top_concepts(cc.topk)),
                 "concept_refit_spearman": concepts_mod.weight_spearman(pcbm.coef, other.coef)}
    return Concepts(pcbm.to_state(), {
        "pcbm_acc": acc,
        "concept_topk_overlap": concepts_mod.topk_overlap(top, dense.top_concepts(cc.topk)),
        "concept_weight_spearman": concepts_mod.weight_spearman(pcbm.coef, dense.coef),
        "top_concepts": names, **refit,
    })


def refit_pcbm(t: Trial, train_feats: torch.Tensor, train_y: torch.Tensor) -> concepts_mod.PCBM:
    """The same backbone's PCBM fitted again with another fit seed on a bootstrap resample of the bank's
    images: how far a concept bottleneck disagrees with itself when only the fit's randomness and the
    sample change. A concept shift within this is indistinguishable from refitting."""
    cc, bank = t.cfg.concepts, t.bank
    assert bank is not None
    seed = data_mod.step_seed(t.cfg.seed, 6, 0)
    boot = torch.randint(len(train_feats), (len(train_feats),), generator=torch.Generator().manual_seed(seed))
    pick = {v.device: boot.to(v.device) for v in (train_feats, bank.train_sim, train_y)}
    return concepts_mod.fit_pcbm(train_feats[pick[train_feats.device]], bank.train_sim[pick[bank.train_sim.device]],
                                 train_y[pick[train_y.device]], steps=cc.proj_steps, C=cc.C, l1_ratio=cc.l1_ratio,
                                 seed=seed)


@dataclass(frozen=True)
class Measurement:
    """What `measure` computed of the model: the row's metric columns, and at level 0 the references."""

    cols: dict[str, Any]
    maps: np.ndarray  # Grad-CAM maps of the probe images
    lrp: np.ndarray | None  # LRP maps of the probe images (explain.lrp)
    guide_maps: torch.Tensor | None  # level 0, when the method or the fidelity loss reads them
    concepts: Concepts | None


class _Clock:
    """Seconds per named part of a level's explain step (the row's *_seconds columns)."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}

    @contextlib.contextmanager
    def part(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - t0


def measure(t: Trial, st: TrialState, level: int) -> Measurement:
    """Test accuracy, Grad-CAM against the dense maps, faithfulness and concepts of the model. At level 0
    (st.dense_maps is None) its maps are the reference of every later level. Each part's seconds go in
    its column (cam_, faithfulness_, lrp_, sanity_, pcbm_seconds); explain_seconds is their whole."""
    t_eval = time.perf_counter()
    if t.bank is None:
        acc, loss, test_feats = *evaluate(t.model, t.data.test_x, t.data.test_y), None
    else:  # one pass over the test set gives accuracy and the PCBM's test features
        acc, loss, test_feats = evaluate_with_features(t.model, t.data.test_x, t.data.test_y)
    eval_seconds = time.perf_counter() - t_eval
    t0, clock = time.perf_counter(), _Clock()
    ref = None if st.dense_maps is None else st.dense_maps.numpy()
    with clock.part("cam_seconds"):
        rep = explain(t.model, t.model.cam_layer, t.data.probe_x, t.data.probe_y, ref, t.cfg.explain,
                      faithful=False)
        guide_maps = None
        if level == 0 and t.needs_guide_maps:
            guide_maps = torch.from_numpy(gradcam(t.model, t.model.cam_layer, t.guide_x, t.guide_y))
    with clock.part("faithfulness_seconds"):
        faith = float(np.nanmean(faithfulness(t.model, t.data.probe_x, t.data.probe_y, rep.maps, t.cfg.explain)))
    lrp, more = None, {}
    if t.cfg.explain.lrp:
        with clock.part("lrp_seconds"):
            lrp = lrp_maps(t.model, t.data.probe_x, t.data.probe_y)
            ref_lrp = lrp if st.dense_lrp is None else st.dense_lrp.numpy()
            more = {"lrp_spearman": float(np.mean(spearman(lrp, ref_lrp))),
                    **localisation.columns(lrp, t.objects, "lrp")}
    if level == 0:  # the randomisation sanity check of each attribution method, once per trial
        more["reference_cams"] = rep.maps.astype(np.float32).ravel().tolist()  # the seed-vs-seed floor
        if lrp is not None:
            more["reference_lrp"] = lrp.astype(np.float32).ravel().tolist()
        seed = data_mod.step_seed(t.cfg.seed, 5, 0)
        with clock.part("sanity_seconds"):
            more["cam_sanity_spearman"] = sanity.similarity(
                lambda m, x, y: gradcam(m, m.cam_layer, x, y), t.model, t.data.probe_x, t.data.probe_y, seed,
                rep.maps)
            if lrp is not None:
                more["lrp_sanity_spearman"] = sanity.similarity(lrp_maps, t.model, t.data.probe_x, t.data.probe_y,
                                                                seed, lrp)
    with clock.part("pcbm_seconds"):
        con = None if test_feats is None else concept_columns(t, st.dense_pcbm, test_feats)
    cols = {"test_acc": acc, "test_loss": loss, "cam_spearman": rep.spearman, "cam_iou": rep.iou,
            "cam_faithfulness": faith, "probe_cams": rep.maps[:GALLERY].ravel().tolist(),
            **localisation.columns(rep.maps, t.objects), **more,
            "object_area": None if t.objects is None else float(t.objects.mean()),
            **(con.cols if con is not None else {}), **clock.parts}
    return Measurement({**cols, "explain_seconds": time.perf_counter() - t0, "eval_seconds": eval_seconds}, rep.maps,
                       lrp, guide_maps, con)


def fresh_init(t: Trial, level: int) -> Weights:
    """The random-reinitialisation control (Frankle & Carbin 2019): a fresh initialisation drawn with
    another seed (one per level), to be trained under the ticket's mask on the ticket's schedule."""
    cfg = t.cfg
    return _state_cpu(build(cfg.model.name, t.data.spec.num_classes, data_mod.step_seed(cfg.seed, 3, level),
                            t.data.spec.channels, t.data.train_x.dtype))


def instability_columns(t: Trial, st: TrialState, level: int, mask: masks.Mask, began_from: Weights,
                        sched: Schedule) -> tuple[dict[str, Any], float]:
    """Train a second copy of the measured network (the model holds it) from `began_from` under the same
    mask and schedule with another data order, then measure the test error along the line between the
    two copies. Returns the columns and the copy's training seconds; the model holds the first copy again."""
    own = _state_cpu(t.model)
    t.model.load_state_dict(began_from)
    tr = train_level(t, st, level, mask, sched, data_seed=data_mod.step_seed(t.cfg.seed, 4, level))
    other = _state_cpu(t.model)
    errors = instability.error_path(t.model, own, other, t.data, t.cfg.instability,
                                    batch_size=t.cfg.train.batch_size, seed=t.cfg.seed)
    return {"instability_barrier": instability.barrier(errors), "instability_errors": errors}, tr.seconds


@dataclass(frozen=True)
class Level:
    """Everything one level computed: its row's columns and what the state keeps of it."""

    level: int
    mask: masks.Mask
    began_from: Weights  # the lineage's weights when its training began
    lineage: Weights  # the lineage's trained weights: the next level prunes these
    cols: dict[str, Any]  # the row's metric and timing columns
    rewind: Weights | None = None  # level 0: the rewind point saved during training
    measurement: Measurement | None = None  # None when the level diverged
    rewinds: dict[int, Weights] = field(default_factory=dict)  # level 0: every rewind point saved (share)


def begin(t: Trial, st: TrialState, level: int) -> tuple[masks.Mask, Schedule]:
    """Load the level's starting weights into the model and return its mask and schedule."""
    if level == 0:
        return masks.ones(t.model), schedule_of(t, st, level)
    t.model.load_state_dict(st.weights)  # the last level's lineage: what the method prunes
    mask = next_mask(t, st, level)
    return mask, schedule_of(t, st, level)


def schedule_of(t: Trial, st: TrialState, level: int) -> Schedule:
    """The level's training schedule; a pruned level's rewind sets the model's starting weights."""
    if level == 0:
        return schedule.dense(t.cfg)
    return REWINDS.get(t.cfg.prune.rewind)(t.model, st.rewind, t.cfg)


@dataclass(frozen=True)
class Trained:
    """A level's lineage training: where it began, what it reached, level 0's rewind points (step ->
    weights), and its seconds."""

    began_from: Weights
    lineage: Weights
    rewinds: dict[int, Weights]
    seconds: float


def train_lineage(t: Trial, st: TrialState, level: int, mask: masks.Mask, sched: Schedule,
                  rewind_points: tuple[int, ...] = ()) -> Trained:
    """Train the lineage of level `level` from the model's weights (see `begin`); raises Diverged. Level 0
    saves the weights at the trial's rewind point k and at every step of `rewind_points` (the points the
    other trials of a sweep rewind to, so the dense level trains once for all of them)."""
    began_from, saved = _state_cpu(t.model), {}
    wanted = {schedule.rewind_steps(t.cfg), *rewind_points} if level == 0 else set()

    def keep_rewind_points(step: int) -> None:
        if step in wanted:
            saved[step] = _state_cpu(t.model)

    seconds = train_level(t, st, level, mask, sched, keep_rewind_points if level == 0 else None).seconds
    return Trained(began_from, _state_cpu(t.model), saved, seconds)


def measure_level(t: Trial, st: TrialState, level: int, mask: masks.Mask, sched: Schedule,
                  tr: Trained) -> tuple[dict[str, Any], Measurement]:
    """Measure the network level `level`'s row describes (the model holds `tr.lineage`): the lineage, or
    for the reinit control a freshly initialised copy trained under the same mask and schedule; plus the
    instability analysis when enabled. Returns the columns (train_seconds: the training done here) and the
    measurement; the model holds the lineage again. Raises Diverged (the reinit copy's training)."""
    cfg = t.cfg
    # Where the measured network's training began: copy 2 of the instability analysis starts there (at
    # level 0 that is the rewind point k, and it trains from k).
    measured_from = tr.rewinds[schedule.rewind_steps(cfg)] if level == 0 else tr.began_from
    if level == 0:
        sched = schedule.from_rewind(cfg)
    seconds = 0.0
    if t.method.reinit and level > 0:
        measured_from = fresh_init(t, level)
        t.model.load_state_dict(measured_from)
        seconds += train_level(t, st, level, mask, sched).seconds
    m = measure(t, st, level)  # of the network the model holds: the lineage, or the reinit copy
    cols = m.cols
    if cfg.instability.enabled:
        t0 = time.perf_counter()
        more, copy_seconds = instability_columns(t, st, level, mask, measured_from, sched)
        seconds += copy_seconds
        cols = {**cols, **more, "explain_seconds": cols["explain_seconds"] + time.perf_counter() - t0 - copy_seconds}
    t.model.load_state_dict(tr.lineage)
    return {**cols, "train_seconds": seconds}, m


def run_level(t: Trial, st: TrialState, level: int, mask: masks.Mask, sched: Schedule,
              rewind_points: tuple[int, ...] = ()) -> Level:
    """Train level `level` from the model's weights (see `begin`) and measure the network its row
    describes. Raises Diverged.

    The lineage is always trained (the next level prunes it). The reinit control then trains a freshly
    initialised copy under the same mask and schedule, and the row measures that copy. The model holds
    the lineage again on return."""
    tr = train_lineage(t, st, level, mask, sched, rewind_points)
    cols, m = measure_level(t, st, level, mask, sched, tr)
    k = schedule.rewind_steps(t.cfg)
    return Level(level, mask, tr.began_from, tr.lineage, {**cols, "train_seconds": cols["train_seconds"] + tr.seconds},
                 tr.rewinds.get(k) if level == 0 else None, m, tr.rewinds)


@dataclass(frozen=True)
class SharedLevel:
    """A level as the store gave it or as this trial computed and published it: the Level (None when it
    diverged), its mask and steps, and the run_id it was reused from (None: computed here)."""

    level: Level | None
    mask: masks.Mask
    train_steps: int
    shared_from: str | None


def shared_level(t: Trial, st: TrialState, level: int, store: share.Store,
                 rewind_points: tuple[int, ...] = ()) -> SharedLevel:
    """Level `level` from the sweep's store when another trial computed it, else computed here and
    published: first the lineage (mask and trained weights, under its key's lock), then the measurement
    (under its own). The row's train_seconds and explain_seconds count this trial's own work only."""
    cfg, rid = t.cfg, run_id(t.cfg)
    k = schedule.rewind_steps(cfg)
    lk, mk = share.lineage_key(cfg, level), share.measured_key(cfg, level)
    own_train = own_explain = 0.0
    with store.claim("lineage", lk):
        lin = store.get("lineage", lk)
        if lin is not None and level == 0 and k not in lin.rewinds:
            lin = None  # its producer did not save this trial's rewind point: train it here
        lineage_from = None if lin is None else lin.source
        if lin is None:
            mask, sched = begin(t, st, level)
            steps = sched.end - sched.start
            try:
                tr = train_lineage(t, st, level, mask, sched, rewind_points)
            except Diverged:
                store.put("lineage", lk, share.Lineage(mask, {}, {}, train_steps=steps, diverged=True, source=rid))
                return SharedLevel(None, mask, steps, None)
            own_train = tr.seconds
            lin = share.Lineage(mask, tr.began_from, tr.lineage, tr.rewinds, steps, source=rid)
            store.put("lineage", lk, lin)
        elif lin.diverged:
            return SharedLevel(None, lin.mask, lin.train_steps, lineage_from)
        else:
            sched = schedule_of(t, st, level)  # the mask is stored: no pruning again
            mask = {n: v.to(t.device) for n, v in lin.mask.items()}
    t.model.load_state_dict(lin.lineage)
    tr = Trained(lin.began_from, lin.lineage, lin.rewinds, 0.0)
    with store.claim("measured", mk):
        # a lineage trained here is measured here too: a stored measurement was made of the stored
        # lineage, which another machine's floats may have made differently
        me = store.get("measured", mk) if lineage_from is not None else None
        if me is None:
            try:
                cols, m = measure_level(t, st, level, mask, sched, tr)
            except Diverged:  # the reinit copy's training
                store.put("measured", mk, share.Measured({}, source=rid))
                t.model.load_state_dict(lin.lineage)
                return SharedLevel(None, mask, lin.train_steps, lineage_from)
            own_train, own_explain = own_train + cols["train_seconds"], cols["explain_seconds"]
            me = share.Measured(cols, m.maps, m.lrp, m.guide_maps, m.concepts.pcbm if m.concepts else {}, source=rid)
            store.put("measured", mk, me)
            shared_from = lineage_from
        elif not me.cols:
            return SharedLevel(None, mask, lin.train_steps, me.source)
        else:
            shared_from = me.source
    guide_maps = me.guide_maps
    if level == 0 and t.needs_guide_maps and guide_maps is None:  # its producer's method did not read them
        guide_maps = torch.from_numpy(gradcam(t.model, t.model.cam_layer, t.guide_x, t.guide_y))
    con = Concepts(me.pcbm, {}) if me.pcbm else None
    m = Measurement(me.cols, me.maps, me.lrp, guide_maps, con)
    # this trial's own seconds only: a reused measurement's parts took it none
    reused = shared_from is not None and shared_from == me.source
    cols = {**me.cols, **({c: 0.0 for c in me.cols if c.endswith("_seconds")} if reused else {}),
            "train_seconds": own_train, "explain_seconds": own_explain}
    lv = Level(level, mask, lin.began_from, lin.lineage, cols, lin.rewinds.get(k) if level == 0 else None, m,
               lin.rewinds)
    return SharedLevel(lv, mask, lin.train_steps, shared_from)


def advance(st: TrialState, lv: Level) -> TrialState:
    """The trial's state after level `lv`: the one place it changes."""
    m = lv.measurement
    con = m.concepts if m is not None else None
    first = lv.level == 0 and m is not None
    return dataclasses.replace(
        st, level=lv.level, mask={n: v.cpu() for n, v in lv.mask.items()}, weights=lv.lineage,
        began_from=lv.began_from, diverged=m is None,
        rewind=lv.rewind if lv.rewind is not None else st.rewind,
        dense_maps=torch.from_numpy(np.ascontiguousarray(m.maps)) if first else st.dense_maps,
        dense_lrp=torch.from_numpy(m.lrp) if first and m.lrp is not None else st.dense_lrp,
        guide_maps=m.guide_maps if first else st.guide_maps,
        pcbm=con.pcbm if con is not None else st.pcbm,
        dense_pcbm=con.pcbm if first and con is not None else st.dense_pcbm,
    )


def publish(record: LevelRecord, mask: masks.Mask, results_dir: str | Path) -> dict[str, Any]:
    """Write the level's mask file, then its row (a no-op for either if it exists): a row implies its mask."""
    row = record.to_row()
    mask_files.write(results_dir, record.run_id, record.level, mask)
    results.write_row(results_dir, row)
    return row


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def check_masks(cfg: TrialConfig, st: TrialState, workdir: Path, results_dir: str | Path,
                say: Callable[[str], None]) -> TrialState:
    """The state to continue from, given the mask files of the finished levels: a missing or unreadable
    one is named and set aside, and its level is recomputed (from PREVIOUS when it is the last level,
    else from level 0); rows that exist stay and are never written twice."""
    rid = run_id(cfg)
    for level in range(st.level + 1):
        why = mask_files.problem(results_dir, rid, level)
        if why is None:
            continue
        path = mask_files.path_of(results_dir, rid, level)
        if why != "is missing":
            storage.set_aside(path)
        try:
            prev = TrialState.load(workdir / PREVIOUS) if level == st.level and (workdir / PREVIOUS).exists() \
                else None
        except CorruptState:
            prev = None
        start = prev if prev is not None and prev.level == level - 1 else TrialState()
        say(f"lthray: mask file {path} {why}; recomputing from level {start.level + 1}")
        return start
    return st


def run_trial(
    cfg: TrialConfig,
    workdir: str | Path,
    results_dir: str | Path,
    *,
    sweep: str = "",
    trial_id: str = "",
    device: torch.device | str | None = None,
    on_level: Callable[[dict[str, Any]], None] | None = None,
    shared: str | Path | None = None,
    rewind_points: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    """Run (or continue) every level of `cfg`; returns the rows of all finished levels (as stored).
    `shared`: the sweep's store of finished levels (lthray.share), reused where another trial computed a
    level and published to where this one does; `rewind_points`: the steps the sweep's trials rewind to,
    all saved at level 0 when this trial trains it."""
    validate.check(cfg)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    state = check_masks(cfg, resume_state(workdir, _say), workdir, results_dir, _say)
    device = torch.device(device) if device is not None else default_device()
    t = setup(cfg, device, sweep=sweep, trial_id=trial_id)
    store = share.Store(shared) if shared is not None else None
    for level in range(state.level + 1, cfg.prune.levels + 1):
        if state.finished(cfg.prune.levels):
            break
        if store is not None:
            got = shared_level(t, state, level, store, rewind_points)
            mask, steps, lv, shared_from = got.mask, got.train_steps, got.level, got.shared_from
        else:
            mask, sched = begin(t, state, level)
            steps, shared_from = sched.end - sched.start, None
            try:
                lv = run_level(t, state, level, mask, sched)
            except Diverged:
                lv = None
        fixed = {**t.identity, "level": level, "density": masks.density(mask), "empty_layers": masks.empty_layers(mask),
                 "train_steps": steps, "shared_from": shared_from}
        if lv is not None:
            record = LevelRecord(**fixed, status="ok", **lv.cols)
        else:  # a row that says so; no later level is trained
            lv = Level(level, mask, {}, _state_cpu(t.model), {})
            record = LevelRecord(**fixed, status="diverged", train_seconds=0.0, explain_seconds=0.0)
        row = publish(record, mask, results_dir)
        state = advance(state, lv)
        state.save(workdir / STATE)  # marks the level finished
        if on_level is not None:
            on_level(row)
    return results.read_run(results_dir, run_id(cfg), range(state.level + 1))
