"""Grad-CAM through pytorch-grad-cam, and how far a pruned model's maps drift from the dense model's.

Maps are always taken for the *true* class of each probe image, so the dense and the pruned model
answer the same question even where the pruned model mispredicts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget, ClassifierOutputTarget
from torch import nn

from lthray.config import ExplainConfig
from lthray.explain.rank import spearman
from lthray.explain.road import ROAD
from lthray.modes import eval_mode


def gradcam(model: nn.Module, layer: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Grad-CAM maps (N, H, W) in [0, 1] at input resolution, for class y[i] of image x[i]."""
    targets = [ClassifierOutputTarget(int(c)) for c in y.tolist()]
    with eval_mode(model, clear_grads=True), GradCAM(model=model, target_layers=[layer]) as cam:
        return cam(input_tensor=x, targets=targets).astype(np.float32)


def topk_iou(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Per-image IoU of the top-k fraction of pixels of two map stacks (exact counts, stable ties)."""
    n, hw = len(a), a[0].size
    kk = max(1, int(round(k * hw)))

    def top(m: np.ndarray) -> np.ndarray:
        idx = np.argsort(-m.reshape(n, -1), axis=1, kind="stable")[:, :kk]
        sel = np.zeros((n, hw), dtype=bool)
        np.put_along_axis(sel, idx, True, axis=1)
        return sel

    ta, tb = top(a), top(b)
    return (ta & tb).sum(1) / (ta | tb).sum(1)


def faithfulness(model: nn.Module, x: torch.Tensor, y: torch.Tensor, maps: np.ndarray,
                 cfg: ExplainConfig) -> np.ndarray:
    """Per-image faithfulness of `model`'s own maps (higher = the map points at what the model uses).

    road: ROAD combined (Rong et al. 2022): (LeRF - MoRF) confidence change, averaged over percentiles
    (pytorch-grad-cam's ROADCombined, its imputer's system built faster: explain.road).
    confidence_drop: change in confidence when the image is multiplied by its map.
    """
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in y.tolist()]
    metric = ROAD(list(cfg.road_percentiles)) if cfg.faithfulness == "road" \
        else CamMultImageConfidenceChange()
    with eval_mode(model, clear_grads=True), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # ROAD's imputation adds noise: same noise for every model compared
        return np.asarray(metric(x, maps, targets, model), dtype=np.float64).reshape(-1)


def gradcam_tensor(model: nn.Module, layer: nn.Module, x: torch.Tensor, y: torch.Tensor,
                   create_graph: bool = False) -> torch.Tensor:
    """Grad-CAM at the layer's resolution (N, h, w) as a differentiable tensor (unnormalised, >= 0).

    Written by hand because pytorch-grad-cam returns detached numpy maps: explanation-preserving
    retraining needs gradients *through* the map (create_graph=True), which no CAM library offers.
    Same recipe as pytorch-grad-cam's GradCAM: weights = spatial mean of d score / d activation.
    """
    acts: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda m, i, o: acts.append(o))
    try:
        logits = model(x)
    finally:
        handle.remove()
    a = acts[0]
    score = logits.gather(1, y[:, None]).sum()
    (grad,) = torch.autograd.grad(score, a, create_graph=create_graph)
    return torch.relu((grad.mean(dim=(2, 3), keepdim=True) * a).sum(1))


def fidelity_loss(model: nn.Module, layer: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  dense_maps: torch.Tensor) -> torch.Tensor:
    """1 - cos(CAM_model, CAM_dense), mean over images; dense maps at input resolution are pooled down.

    Cosine is scale-free, so the maps need no normalising (min-max scaling divides by a near-zero range
    when a map is nearly flat, and its second-order gradients then overflow). Images whose map is
    (nearly) zero carry no direction to align and are left out rather than divided by ~0.
    """
    cam2d = gradcam_tensor(model, layer, x, y, create_graph=True).float()
    ref = torch.nn.functional.adaptive_avg_pool2d(dense_maps.to(cam2d)[:, None], cam2d.shape[-2:])[:, 0].flatten(1)
    cam = cam2d.flatten(1)
    norm = cam.norm(dim=1)
    ok = (norm > 1e-3).detach() & (ref.norm(dim=1) > 0)
    if not ok.any():
        return cam.sum() * 0.0  # keeps the graph, adds nothing
    cos = (cam[ok] * ref[ok]).sum(1) / (norm[ok] * ref[ok].norm(dim=1))
    return (1 - cos).mean()


@dataclass
class CamReport:
    maps: np.ndarray
    rho: np.ndarray  # per probe image: Spearman with the reference map (`spearman` is their mean)
    spearman: float
    iou: float
    faithfulness: float


def explain(model: nn.Module, layer: nn.Module, x: torch.Tensor, y: torch.Tensor, reference: np.ndarray | None,
            cfg: ExplainConfig, faithful: bool = True) -> CamReport:
    """Maps of `model` on the probe set, compared with `reference` (the dense model's maps); with
    `faithful`, their faithfulness too (else nan: the caller times and computes it itself)."""
    maps = gradcam(model, layer, x, y)
    ref = maps if reference is None else reference
    rho = spearman(maps, ref)
    return CamReport(
        maps=maps,
        rho=rho,
        spearman=float(np.mean(rho)),
        iou=float(np.mean(topk_iou(maps, ref, cfg.topk))),
        faithfulness=float(np.nanmean(faithfulness(model, x, y, maps, cfg))) if faithful else float("nan"),
    )
