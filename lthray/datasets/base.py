"""What a dataset is to lthray: a `DatasetSpec` registered in DATASETS. A dataset module (built in, or a
user's plugin) registers one spec whose `load(root)` returns uint8 NHWC train and test images, int labels
and class names; `lthray.data` puts them on the device."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lthray.registry import Registry


class DataUnavailableError(RuntimeError):
    """The dataset is not on disk and could not be fetched (e.g. no network)."""


@dataclass(frozen=True)
class DatasetSpec:
    """What is known about a dataset before loading it (used to validate configs up front)."""

    name: str
    num_train: int
    num_test: int
    num_classes: int
    flip: bool  # horizontal flips are label-preserving (not for digits: a flipped 2 is no 2)
    pad: int  # max translation in pixels for random crops
    load: Callable[[Path], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]]
    channels: int = 3  # input channels the models are built for (1 for grayscale datasets)
    # Objects on a black background: the pixels above it are a ground-truth object mask (object_masks).
    black_background: bool = False


DATASETS: Registry[DatasetSpec] = Registry("dataset")


def cache_dir() -> Path:
    """Where downloads go: $LTHRAY_DATA, else ~/.cache/lthray."""
    return Path(os.environ.get("LTHRAY_DATA", Path.home() / ".cache" / "lthray")).expanduser()
