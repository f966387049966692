"""Where a saliency map lies, against ground truth: the object's own pixels.

Fashion-MNIST shows every garment on a black background, so the pixels above the background are an
object mask (the rule: an object pixel has 8-bit intensity >= 1; `lthray.data.object_masks`). On it:
- energy inside (the energy-based pointing game, Wang et al. 2020, 'Score-CAM'): the share of the map's
  mass that falls on the object. A map spread evenly over the image scores the object's area fraction,
  which is this metric's chance level (`object_area`).
- pointing game (Zhang et al. 2018, 'Top-down neural attention by excitation backprop'): is the map's
  maximum on the object (a flat peak: the share of its pixels that are).
- concentration: the fraction of the image's area that holds half of the map's mass (small = focused
  on a specific part, 0.5 = no more focused than uniform). Needs no mask.
Pure numpy over (N, H, W) maps: no library computes these on given masks (pytorch-grad-cam's metrics
perturb the input instead), and each is a line or two.
"""

from __future__ import annotations

import numpy as np


def energy_inside(maps: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Per image: sum of the map on the object / sum of the map (NaN for an all-zero map)."""
    m = np.clip(maps.reshape(len(maps), -1).astype(np.float64), 0, None)
    total = m.sum(1)
    inside = (m * objects.reshape(len(objects), -1)).sum(1)
    return np.where(total > 0, inside / np.where(total > 0, total, 1), np.nan)


def pointing(maps: np.ndarray, objects: np.ndarray) -> np.ndarray:
    """Per image: 1.0 if the map's maximum lies on the object, else 0.0 (NaN for an all-zero map). A map
    maximal on several pixels (Grad-CAM's upsampled peaks are often flat) scores the share of them on the
    object, so no tie-break favours one corner of the image."""
    m = maps.reshape(len(maps), -1)
    top = m >= m.max(1, keepdims=True)
    hit = (top & objects.reshape(len(objects), -1)).sum(1) / top.sum(1)
    return np.where(m.max(1) > 0, hit, np.nan)


def concentration(maps: np.ndarray) -> np.ndarray:
    """Per image: the smallest fraction of pixels whose map values sum to half the map's mass."""
    m = np.clip(maps.reshape(len(maps), -1).astype(np.float64), 0, None)
    s = -np.sort(-m, axis=1)
    c = np.cumsum(s, axis=1)
    total = c[:, -1]
    k = (c < 0.5 * total[:, None]).sum(1) + 1  # pixels needed to reach half the mass
    return np.where(total > 0, k / m.shape[1], np.nan)


def columns(maps: np.ndarray, objects: np.ndarray | None, method: str = "cam") -> dict[str, float | None]:
    """The row's localisation columns of one attribution method's maps (METHOD_energy_inside, ...): means
    over the probe images, the mask-based ones null without masks."""
    def mean(v: np.ndarray) -> float | None:
        return float(np.nanmean(v)) if np.isfinite(v).any() else None

    return {f"{method}_concentration": mean(concentration(maps)),
            f"{method}_energy_inside": None if objects is None else mean(energy_inside(maps, objects)),
            f"{method}_pointing": None if objects is None else mean(pointing(maps, objects))}
