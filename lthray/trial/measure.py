"""Measuring the network a level's row describes: test accuracy, Grad-CAM against the dense maps,
faithfulness, LRP, localisation, the sanity checks (level 0) and the post-hoc concept bottleneck. At
level 0 the maps, LRP maps and PCBM become the references of every later level."""

from __future__ import annotations

import contextlib
import functools
import sys
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
from lthray.explain.occlusion import occlusion_maps
from lthray.explain.rank import spearman
from lthray.models import build
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
    teacher_logits: torch.Tensor | None = None  # level 0, when the distillation arm reads them
    occlusion: np.ndarray | None = None  # occlusion maps of the probe images (explain.occlusion)


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


def concept_columns(trial: Trial, dense_pcbm: dict[str, torch.Tensor], test_feats: torch.Tensor) -> Concepts | None:
    """The concept bottleneck of the model's backbone through the dense projection (`dense_pcbm`; empty at
    level 0, where the dense PCBM is fitted: projection, fidelity cutoff, concept -> class layer) and its
    concept measure against the dense PCBM (`concepts.refit_agreement`). At level 0 also the measure's
    range: the dense backbone refitted (the top, concept_refit_*) and the trial's own initialisation, an
    untrained backbone (the bottom, concept_random_*). `test_feats`: the model's features of the test
    images, for the PCBM's test accuracy. None when no concept passes the fidelity cutoff."""
    cc, data, bank = trial.cfg.concepts, trial.data, trial.bank
    assert bank is not None, "concept_columns needs a concept bank (measure calls it only with one)"
    idx = slice(None) if bank.train_idx is None else bank.train_idx.to(data.train_x.device)
    feats, y = concepts_mod.features(trial.model, data.train_x[idx]), data.train_y[idx]
    fit = {"C": cc.C, "l1_ratio": cc.l1_ratio}
    ref = concepts_mod.PCBM(**dense_pcbm) if dense_pcbm else concepts_mod.fit_pcbm(
        feats, bank.train_sim, y, steps=cc.proj_steps, seed=trial.cfg.seed, cutoff=cc.fidelity_cutoff, **fit)
    if ref is None:
        warn_no_concepts(trial)
        return None
    own = ref if not dense_pcbm else concepts_mod.fit_head(feats, ref.proj, ref.kept, y, seed=trial.cfg.seed, **fit)
    acc = float((own.logits(test_feats).argmax(1).cpu() == data.test_y.cpu()).float().mean())
    names = [f"{data.class_names[c]}: " + " | ".join(n) for c, n in enumerate(own.names(bank.concepts, cc.topk))]
    cols: dict[str, Any] = {"pcbm_acc": acc, "top_concepts": names, "concepts_kept": len(ref.kept)}
    if len(ref.kept) <= cc.topk:  # every concept is in every class's top k: the overlap would say nothing
        warn_no_concepts(trial, len(ref.kept))
        return Concepts(own.to_state(), cols)
    agree = functools.partial(concepts_mod.refit_agreement, y=y, ref=ref, refits=cc.refits, k=cc.topk,
                              seed=data_mod.step_seed(trial.cfg.seed, Salt.PCBM_REFIT, 0), **fit)
    cols["concept_topk_overlap"], cols["concept_weight_spearman"] = agree(feats)
    if not dense_pcbm:  # level 0: the range of the measure. Its top: the dense backbone's own refits (what
        # concept_topk_overlap just measured, named as the refit floor); its bottom: an untrained backbone
        cols["concept_refit_overlap"], cols["concept_refit_spearman"] = (cols["concept_topk_overlap"],
                                                                          cols["concept_weight_spearman"])
        untrained = build(trial.cfg.model.name, data.spec.num_classes, trial.cfg.seed, data.spec.channels,
                          data.train_x.dtype).to(data.train_x.device)
        cols["concept_random_overlap"], cols["concept_random_spearman"] = agree(
            concepts_mod.features(untrained, data.train_x[idx]))
    return Concepts(own.to_state() if dense_pcbm else ref.to_state(), cols)


def warn_no_concepts(trial: Trial, kept: int = 0) -> None:
    cc = trial.cfg.concepts
    print(f"only {kept} of the vocabulary's concepts pass the fidelity cutoff {cc.fidelity_cutoff} "
          f"(concepts.fidelity_cutoff); the concept measure needs more than concepts.topk={cc.topk}, so its "
          "columns are null: lower the cutoff, or use a vocabulary the backbone can predict", file=sys.stderr)


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


def occlusion_columns(trial: Trial, state: TrialState,
                      clock: Clock) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """The occlusion maps of the probe images, their per-image Spearman with the dense occlusion maps, and
    their column (none unless explain.occlusion): the attribution no training loss reads."""
    ex = trial.cfg.explain
    if not ex.occlusion:
        return None, None, {}
    with clock.part("occlusion_seconds"):
        occ = occlusion_maps(trial.model, trial.data.probe_x, trial.data.probe_y, ex.occlusion_window,
                             ex.occlusion_stride)
        rho = spearman(occ, occ if state.dense_occlusion is None else state.dense_occlusion.numpy())
        return occ, rho, {"occlusion_spearman": float(np.mean(rho))}


def reference_columns(trial: Trial, maps: np.ndarray, lrp: np.ndarray | None, clock: Clock) -> dict[str, Any]:
    """Level 0's extra columns: every probe map (the seed-vs-seed floor) and the randomisation sanity checks
    of each attribution method (all weights at once, and the cascade), once per trial."""
    more: dict[str, Any] = {"reference_cams": maps.astype(np.float32).ravel().tolist()}
    if lrp is not None:
        more["reference_lrp"] = lrp.astype(np.float32).ravel().tolist()
    seed = data_mod.step_seed(trial.cfg.seed, Salt.SANITY, 0)
    x, y = trial.data.probe_x, trial.data.probe_y
    cam = lambda m, a, b: gradcam(m, m.cam_layer, a, b)  # noqa: E731
    with clock.part("sanity_seconds"):
        for name, fn, ref in (("cam", cam, maps), ("lrp", lrp_maps, lrp)):
            if ref is not None:
                more[f"{name}_sanity_spearman"] = sanity.similarity(fn, trial.model, x, y, seed, ref)
                more["cascade_layers"], more[f"{name}_cascade_spearman"] = sanity.cascade(fn, trial.model, x, y,
                                                                                         seed, ref)
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


@torch.no_grad()
def teacher_logits(trial: Trial, batch_size: int = 512) -> torch.Tensor:
    """The model's logits on every (un-augmented) training image, in eval mode, on the CPU, N x classes float32:
    level 0's are the distillation arm's teacher (train.Distill)."""
    from lthray.modes import eval_mode

    x = trial.data.train_x
    with eval_mode(trial.model):
        return torch.cat([trial.model(x[i : i + batch_size]).float() for i in range(0, len(x), batch_size)]).cpu()


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
    occ, _, occ_cols = occlusion_columns(trial, state, clock)
    more.update(occ_cols)
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
                       lrp, guide_maps, con, ev.log_probs if level == 0 else None,
                       teacher_logits(trial) if level == 0 and trial.needs_teacher_logits else None, occ)
