"""Measuring the network a level's row describes: test accuracy, Grad-CAM against the dense maps,
faithfulness, LRP, localisation, the sanity checks (level 0) and the post-hoc concept bottleneck. At
level 0 the maps, LRP maps and PCBM become the references of every later level."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lthray import data as data_mod
from lthray import metrics
from lthray.data import Salt
from lthray.explain import concepts as concepts_mod
from lthray.explain import function, localisation, sanity
from lthray.explain.cam import explain, faithfulness, gradcam
from lthray.explain.lrp import lrp_maps
from lthray.explain.rank import spearman
from lthray.results import GALLERY
from lthray.train import evaluate_test
from lthray.trial.setup import Trial
from lthray.trial.state import TrialState


@dataclass(frozen=True)
class Concepts:
    """This level's concept bottleneck and its columns."""

    pcbm: dict[str, torch.Tensor]
    cols: dict[str, Any]


@dataclass(frozen=True)
class Measurement:
    """What `measure` computed of the model: the row's metric columns, and at level 0 the references."""

    cols: dict[str, Any]
    maps: np.ndarray  # Grad-CAM maps of the probe images
    lrp: np.ndarray | None  # LRP maps of the probe images (explain.lrp)
    guide_maps: torch.Tensor | None  # level 0, when the method or the fidelity loss reads them
    concepts: Concepts | None
    log_probs: torch.Tensor | None = None  # the test images' log-softmax: level 0's is function change's reference


class Clock:
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


def concept_columns(trial: Trial, dense_pcbm: dict[str, torch.Tensor], test_feats: torch.Tensor) -> Concepts:
    """Fit the PCBM of the model's backbone and compare its concepts with the dense model's (`dense_pcbm`;
    empty at level 0, where this PCBM is the dense one); `test_feats` are the model's features of the test
    images (`train.evaluate_with_features`), for the PCBM's test accuracy. Needs the trial's concept bank."""
    cc, data, bank = trial.cfg.concepts, trial.data, trial.bank
    assert bank is not None, "concept_columns needs a concept bank (measure calls it only with one)"
    idx = slice(None) if bank.train_idx is None else bank.train_idx.to(data.train_x.device)
    train_feats = concepts_mod.features(trial.model, data.train_x[idx])
    pcbm = concepts_mod.fit_pcbm(train_feats, bank.train_sim, data.train_y[idx], steps=cc.proj_steps, C=cc.C,
                                 l1_ratio=cc.l1_ratio, seed=trial.cfg.seed)
    acc = float((pcbm.logits(test_feats).argmax(1).cpu() == data.test_y.cpu()).float().mean())
    dense = concepts_mod.PCBM(**dense_pcbm) if dense_pcbm else pcbm
    top = pcbm.top_concepts(cc.topk)
    names = [f"{data.class_names[c]}: " + " | ".join(bank.concepts[j] for j in top[c]) for c in range(len(top))]
    refit = {}
    if not dense_pcbm:  # level 0: the refit noise floor of every later level's concept shift
        other = refit_pcbm(trial, train_feats, data.train_y[idx])
        refit = {"concept_refit_overlap": concepts_mod.topk_overlap(top, other.top_concepts(cc.topk)),
                 "concept_refit_spearman": concepts_mod.weight_spearman(pcbm.coef, other.coef)}
    return Concepts(pcbm.to_state(), {
        "pcbm_acc": acc,
        "concept_topk_overlap": concepts_mod.topk_overlap(top, dense.top_concepts(cc.topk)),
        "concept_weight_spearman": concepts_mod.weight_spearman(pcbm.coef, dense.coef),
        "top_concepts": names, **refit,
    })


def refit_pcbm(trial: Trial, train_feats: torch.Tensor, train_y: torch.Tensor) -> concepts_mod.PCBM:
    """The same backbone's PCBM fitted again with another fit seed on a bootstrap resample of the bank's
    images: how far a concept bottleneck disagrees with itself when only the fit's randomness and the
    sample change. A concept shift within this is indistinguishable from refitting."""
    cc, bank = trial.cfg.concepts, trial.bank
    assert bank is not None
    seed = data_mod.step_seed(trial.cfg.seed, Salt.PCBM_REFIT, 0)
    boot = torch.randint(len(train_feats), (len(train_feats),), generator=torch.Generator().manual_seed(seed))
    pick = {v.device: boot.to(v.device) for v in (train_feats, bank.train_sim, train_y)}
    return concepts_mod.fit_pcbm(train_feats[pick[train_feats.device]], bank.train_sim[pick[bank.train_sim.device]],
                                 train_y[pick[train_y.device]], steps=cc.proj_steps, C=cc.C, l1_ratio=cc.l1_ratio,
                                 seed=seed)


def lrp_columns(trial: Trial, state: TrialState,
                clock: Clock) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """The LRP maps of the probe images, their per-image Spearman with the dense LRP maps, and their
    columns (none unless explain.lrp)."""
    if not trial.cfg.explain.lrp:
        return None, None, {}
    with clock.part("lrp_seconds"):
        lrp = lrp_maps(trial.model, trial.data.probe_x, trial.data.probe_y)
        rho = spearman(lrp, lrp if state.dense_lrp is None else state.dense_lrp.numpy())
        return lrp, rho, {"lrp_spearman": float(np.mean(rho)), **localisation.columns(lrp, trial.objects, "lrp")}


def reference_columns(trial: Trial, maps: np.ndarray, lrp: np.ndarray | None, clock: Clock) -> dict[str, Any]:
    """Level 0's extra columns: every probe map (the seed-vs-seed floor) and the randomisation sanity check
    of each attribution method, once per trial."""
    more: dict[str, Any] = {"reference_cams": maps.astype(np.float32).ravel().tolist()}
    if lrp is not None:
        more["reference_lrp"] = lrp.astype(np.float32).ravel().tolist()
    seed = data_mod.step_seed(trial.cfg.seed, Salt.SANITY, 0)
    x, y = trial.data.probe_x, trial.data.probe_y
    with clock.part("sanity_seconds"):
        more["cam_sanity_spearman"] = sanity.similarity(lambda m, a, b: gradcam(m, m.cam_layer, a, b), trial.model, x,
                                                        y, seed, maps)
        if lrp is not None:
            more["lrp_sanity_spearman"] = sanity.similarity(lrp_maps, trial.model, x, y, seed, lrp)
    return more


def same_pred_columns(trial: Trial, ref_log_probs: torch.Tensor | None, log_probs: torch.Tensor,
                      rhos: dict[str, np.ndarray | None]) -> dict[str, float]:
    """Grad-CAM and LRP agreement with the dense maps (`rhos`: method -> per-probe-image Spearman) over
    the probe images on which this network predicts what the dense model does (function-matched; none
    when there are no such images, or no dense outputs kept)."""
    if ref_log_probs is None:
        return {}
    same = function.same_prediction(log_probs, ref_log_probs, trial.data.probe_idx).numpy()
    return {f"{name}_spearman_same_pred": float(np.mean(rho[same]))
            for name, rho in rhos.items() if rho is not None and same.any()}


def extra_metrics(trial: Trial) -> dict[str, float] | None:
    """The metrics registered with a compute function (lthray.metrics), of the network the model holds."""
    return {m.name: float(m.compute(trial.model, trial.data)) for m in metrics.computed()} or None


def measure(trial: Trial, state: TrialState, level: int) -> Measurement:
    """Test accuracy, Grad-CAM against the dense maps, faithfulness and concepts of the model. At level 0
    (st.dense_maps is None) its maps are the reference of every later level. Each part's seconds go in
    its column (cam_, faithfulness_, lrp_, sanity_, pcbm_seconds); explain_seconds is their whole."""
    t_eval = time.perf_counter()  # one pass over the test set: accuracy, function change, the PCBM's features
    ev = evaluate_test(trial.model, trial.data.test_x, trial.data.test_y, features=trial.bank is not None)
    acc, loss, test_feats = ev.acc, ev.loss, ev.features
    ref_log_probs = ev.log_probs if level == 0 else state.dense_log_probs
    fn = function.columns(ev.log_probs, ref_log_probs)
    eval_seconds = time.perf_counter() - t_eval
    t0, clock = time.perf_counter(), Clock()
    model, x, y = trial.model, trial.data.probe_x, trial.data.probe_y  # the probe images every map is of
    ref = None if state.dense_maps is None else state.dense_maps.numpy()
    with clock.part("cam_seconds"):
        rep = explain(model, model.cam_layer, x, y, ref, trial.cfg.explain, faithful=False)
        guide_maps = None
        if level == 0 and trial.needs_guide_maps:
            guide_maps = torch.from_numpy(gradcam(trial.model, trial.model.cam_layer, trial.guide_x, trial.guide_y))
    with clock.part("faithfulness_seconds"):
        faith = float(np.nanmean(faithfulness(model, x, y, rep.maps, trial.cfg.explain)))
    lrp, lrp_rho, more = lrp_columns(trial, state, clock)
    if level == 0:
        more.update(reference_columns(trial, rep.maps, lrp, clock))
    with clock.part("pcbm_seconds"):
        con = None if test_feats is None else concept_columns(trial, state.dense_pcbm, test_feats)
    more.update(same_pred_columns(trial, ref_log_probs, ev.log_probs, {"cam": rep.rho, "lrp": lrp_rho}))
    cols = {"test_acc": acc, "test_loss": loss, **fn, "cam_spearman": rep.spearman, "cam_iou": rep.iou,
            "cam_faithfulness": faith, "probe_cams": rep.maps[:GALLERY].ravel().tolist(),
            **localisation.columns(rep.maps, trial.objects), **more,
            "object_area": None if trial.objects is None else float(trial.objects.mean()),
            **(con.cols if con is not None else {}), "extra_metrics": extra_metrics(trial), **clock.parts}
    return Measurement({**cols, "explain_seconds": time.perf_counter() - t0, "eval_seconds": eval_seconds}, rep.maps,
                       lrp, guide_maps, con, ev.log_probs if level == 0 else None)
