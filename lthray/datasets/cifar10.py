"""CIFAR-10 through torchvision: downloaded once into $LTHRAY_DATA/cifar10 (for users with a network)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lthray.datasets.base import DATASETS, DatasetSpec, DataUnavailableError


def load(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """CIFAR-10 through torchvision (downloads into `root` once)."""
    from torchvision.datasets import CIFAR10

    try:
        tr = CIFAR10(str(root), train=True, download=True)
        te = CIFAR10(str(root), train=False, download=True)
    except Exception as e:  # urllib/socket errors offline; RuntimeError for corrupt files
        raise DataUnavailableError(
            f"CIFAR-10 is not in {root} and could not be downloaded ({type(e).__name__}: {e}). "
            f"Put cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) into {root} "
            f"or set LTHRAY_DATA to a folder that holds it, or use --dataset digits (no network needed)."
        ) from e
    return tr.data, np.asarray(tr.targets), te.data, np.asarray(te.targets), list(tr.classes)


DATASETS.register("cifar10")(DatasetSpec("cifar10", 50000, 10000, 10, flip=True, pad=4, load=load))
