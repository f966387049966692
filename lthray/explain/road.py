"""ROAD (Rong et al. 2022) through pytorch-grad-cam, with its imputer's equation system built in one go.

pytorch-grad-cam's `NoisyLinearImputer.setup_sparse_system` fills a scipy `lil_matrix` by fancy-index
assignment, eight times per image and percentile; that assignment was over half of ROAD's time on a demo
level (cProfile: `lil.__setitem__`). `Imputer` builds the *same* matrix from coordinate lists instead, and
keeps everything else of the library's imputer: the right-hand side is computed by the library's own
statements in the library's order, the solve is the same `spsolve` of the same CSC matrix, and the noise
is drawn by the same `randn_like` calls in the same order. ROAD's values are therefore the library's bit
for bit (tests/lthray/explain/test_road.py checks it against the library on random images and masks).
"""

from __future__ import annotations

import numpy as np
import torch
from pytorch_grad_cam.metrics.perturbation_confidence import (
    AveragerAcrossThresholds,
    PerturbationConfidenceMetric,
    RemoveLeastRelevantFirst,
    RemoveMostRelevantFirst,
)
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADCombined, neighbors_weights
from scipy.sparse import csc_matrix
from scipy.sparse.linalg import spsolve


def sparse_system(mask: np.ndarray, img: np.ndarray,
                  weights: list[tuple[tuple[int, int], float]] = neighbors_weights) -> tuple[csc_matrix, np.ndarray]:
    """`NoisyLinearImputer.setup_sparse_system`'s (A, b), with A assembled from (row, col, value) lists.

    Each (row, col) is set once in the library (one neighbour offset per column of a row, the diagonal
    apart), so summing coordinates - what a COO/CSC build does - equals its assignments."""
    maskflt = mask.flatten()
    imgflat = img.reshape((img.shape[0], -1))
    indices = np.argwhere(maskflt == 0).flatten()
    coords_to_vidx = np.zeros(len(maskflt), dtype=int)
    coords_to_vidx[indices] = np.arange(len(indices))
    n = len(indices)
    b = np.zeros((n, img.shape[0]))
    sum_neighbors = np.ones(n)
    rows, cols, vals = [], [], []
    for offset, weight in weights:
        valid, new_coords = NoisyLinearImputer.add_offset_to_indices(indices, offset, mask.shape)
        valid_coords = new_coords[valid]
        valid_ids = np.argwhere(valid == 1).flatten()
        known = maskflt[valid_coords] > 0.5
        b[valid_ids[known], :] -= weight * imgflat[:, valid_coords[known]].T
        unknown = maskflt[valid_coords] < 0.5
        rows.append(valid_ids[unknown])
        cols.append(coords_to_vidx[valid_coords[unknown]])
        vals.append(np.full(int(unknown.sum()), weight))
        outside = np.argwhere(valid == 0).flatten()
        sum_neighbors[outside] = sum_neighbors[outside] - weight
    diag = np.arange(n)
    a = csc_matrix((np.concatenate([*vals, -sum_neighbors]), (np.concatenate([*rows, diag]),
                                                               np.concatenate([*cols, diag]))), shape=(n, n))
    return a, b


class Imputer(NoisyLinearImputer):
    """The library's noisy linear imputer with `sparse_system` in place of its lil_matrix build."""

    def __call__(self, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        imgflt = img.reshape(img.shape[0], -1)
        indices_linear = np.argwhere(mask.reshape(-1) == 0).flatten()
        a, b = sparse_system(mask.numpy(), img.numpy())
        res = torch.tensor(spsolve(a, b), dtype=torch.float)
        img_infill = imgflt.clone()
        img_infill[:, indices_linear] = res.t() + self.noise * torch.randn_like(res.t())
        return img_infill.reshape_as(img)


class ROAD(ROADCombined):
    """`ROADCombined` (LeRF - MoRF, averaged over percentiles) whose perturbations use `Imputer`."""

    def __init__(self, percentiles: list[int]) -> None:
        super().__init__(percentiles)
        self.morf_averager = AveragerAcrossThresholds(
            lambda p: PerturbationConfidenceMetric(RemoveMostRelevantFirst(p, Imputer())), percentiles)
        self.lerf_averager = AveragerAcrossThresholds(
            lambda p: PerturbationConfidenceMetric(RemoveLeastRelevantFirst(p, Imputer())), percentiles)
