"""scikit-learn's bundled handwritten digits: the dataset the tests and the quick presets use (no network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lthray.datasets.base import DATASETS, DatasetSpec


def load(_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """scikit-learn's bundled 1,797 real 8x8 handwritten digits, upsampled to 32x32x3.

    Shipped inside the sklearn wheel, so it needs no network. Split 1,437 train / 360 test,
    stratified with a fixed seed so every run everywhere sees the same split.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]  # N,1,8,8 in [0,1]
    x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False).clamp_(0, 1)
    x = (x.expand(-1, 3, -1, -1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()  # N,H,W,C
    y = d.target.astype(np.int64)
    tr, te = train_test_split(np.arange(len(y)), test_size=360, stratify=y, random_state=0)
    return x[tr], y[tr], x[te], y[te], [str(i) for i in range(10)]


DATASETS.register("digits")(DatasetSpec("digits", 1437, 360, 10, flip=False, pad=2, load=load))
