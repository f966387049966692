"""Spearman rank correlation, the one implementation every explanation metric uses."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Spearman correlation of two stacks (N, ...): row i of `a` against row i of `b`.

    Ranks come from scipy (average ranks for ties). A constant row ranks nothing: two constant rows are
    identical (1); a constant row against a non-constant one agrees on no ranking at all (0). A collapsed
    pruned model whose Grad-CAM is flat has lost its explanation, which must score low, not vanish from a
    mean as scipy.stats.spearmanr's NaN would; that case is why this wraps rankdata and not spearmanr.
    """
    ra = rankdata(a.reshape(len(a), -1), axis=1)
    rb = rankdata(b.reshape(len(b), -1), axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    va, vb = (ra**2).sum(1), (rb**2).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (ra * rb).sum(1) / np.sqrt(va * vb)
    return np.where((va > 0) & (vb > 0), rho, np.where((va == 0) & (vb == 0), 1.0, 0.0))
