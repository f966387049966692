"""Datasets as tensors on the device (airbench style): no DataLoader, no workers.

The whole train set lives on the device; an epoch is a seeded permutation cut into index slices and
augmentation (random translate, optional flip) is done on the batch tensor in one vectorised op.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

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


def _load_digits(_root: Path):
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


def _load_cifar10(root: Path):
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


def _load_fashion_mnist(root: Path):
    """Fashion-MNIST from $LTHRAY_DATA/fashion-mnist, Debian's package, or torchvision (lthray.fashion_mnist)."""
    from lthray import fashion_mnist

    try:
        return fashion_mnist.load(root.parent / "fashion-mnist")
    except fashion_mnist.FashionMNISTError as e:
        raise DataUnavailableError(str(e)) from None


DATASETS.register("digits")(DatasetSpec("digits", 1437, 360, 10, flip=False, pad=2, load=_load_digits))
DATASETS.register("cifar10")(DatasetSpec("cifar10", 50000, 10000, 10, flip=True, pad=4, load=_load_cifar10))
# Clothes mirror into clothes, so flips are label-preserving; 1 channel: models are built for grayscale.
DATASETS.register("fashion_mnist")(DatasetSpec("fashion_mnist", 60000, 10000, 10, flip=True, pad=2,
                                               load=_load_fashion_mnist, channels=1, black_background=True))


@dataclass
class Data:
    """A dataset resident on one device, normalised, NCHW float32 (float64 for `train.dtype=float64`)."""

    spec: DatasetSpec
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    probe_idx: torch.Tensor  # indices into the test set: the fixed images every explanation is computed on
    class_names: list[str]
    mean: torch.Tensor
    std: torch.Tensor

    @property
    def probe_x(self) -> torch.Tensor:
        return self.test_x[self.probe_idx]

    @property
    def probe_y(self) -> torch.Tensor:
        return self.test_y[self.probe_idx]


def subset(y: np.ndarray, n: int) -> np.ndarray:
    """Indices of a fixed, class-stratified subset of n examples (every trial gets the same one)."""
    if n <= 0 or n >= len(y):
        return np.arange(len(y))
    from sklearn.model_selection import train_test_split

    keep, _ = train_test_split(np.arange(len(y)), train_size=n, stratify=y, random_state=0)
    return np.sort(keep)


def to_tensors(
    spec: DatasetSpec, train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray],
    class_names: list[str], probe_size: int, device: torch.device | str, dtype: torch.dtype = torch.float32,
) -> Data:
    """uint8 NHWC arrays -> normalised NCHW float tensors (`dtype`) on `device`, plus a seeded probe set."""
    device = torch.device(device)

    def conv(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).to(dtype).div_(255)

    trx, tex = conv(train[0]), conv(test[0])
    mean = trx.mean(dim=(0, 2, 3), keepdim=True)
    std = trx.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    trx, tex = (trx - mean) / std, (tex - mean) / std
    # The probe set is a fixed function of the test set alone (seed 0), so every trial, seed and
    # method explains the very same images and their maps are comparable across the whole sweep.
    g = torch.Generator().manual_seed(0)
    probe = torch.randperm(len(tex), generator=g)[: min(probe_size, len(tex))].sort().values
    return Data(
        spec, trx.to(device), torch.as_tensor(train[1]).long().to(device), tex.to(device),
        torch.as_tensor(test[1]).long().to(device), probe.to(device), class_names, mean, std,
    )


@lru_cache(maxsize=4)
def load(name: str, probe_size: int = 64, device: str = "cpu", train_size: int = 0, dtype: str = "float32") -> Data:
    """Load dataset `name` onto `device` (cached per process: trials in one worker share it).

    `train_size` > 0 keeps a fixed stratified subset of the training images (quick demos); `dtype` is
    the images' float type (the name, so that the cache key stays a plain string)."""
    spec = DATASETS.get(name)
    trx, try_, tex, tey, classes = spec.load(cache_dir() / name)
    keep = subset(try_, train_size)
    return to_tensors(spec, (trx[keep], try_[keep]), (tex, tey), classes, probe_size, device,
                      getattr(torch, dtype))


def augment(x: torch.Tensor, pad: int, flip: bool, g: torch.Generator) -> torch.Tensor:
    """Random translation by up to `pad` px (reflect padding) and optional h-flip, vectorised."""
    n, _, h, w = x.shape
    if flip:
        f = torch.rand(n, generator=g, device=g.device).to(x.device) < 0.5
        x = torch.where(f[:, None, None, None], x.flip(3), x)
    if pad:
        xp = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        dy = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=g.device).to(x.device)
        dx = torch.randint(0, 2 * pad + 1, (n,), generator=g, device=g.device).to(x.device)
        rows = dy[:, None] + torch.arange(h, device=x.device)  # n,h
        cols = dx[:, None] + torch.arange(w, device=x.device)  # n,w
        b = torch.arange(n, device=x.device)[:, None, None]
        # advanced indices separated by a slice -> result is n,h,w,c
        x = xp[b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x.contiguous()


OBJECT_LEVEL = 0.5 / 255  # an object pixel has 8-bit intensity >= 1: anything above the black background


def object_masks(data: Data, x: torch.Tensor) -> np.ndarray | None:
    """(N, H, W) bool masks of the object in each image of `x` (normalised, from `data`): pixels whose
    intensity in any channel is above the black background. None for datasets without one (CIFAR-10)."""
    if not data.spec.black_background:
        return None
    raw = x.double() * data.std.double().to(x.device) + data.mean.double().to(x.device)
    return (raw.amax(1) > OBJECT_LEVEL).cpu().numpy()


def guide_idx(data: Data, n: int) -> torch.Tensor:
    """A fixed, seeded subset of *training* images that guided criteria and fidelity losses look at."""
    g = torch.Generator().manual_seed(1)
    return torch.randperm(len(data.train_x), generator=g)[: min(n, len(data.train_x))].to(data.train_x.device)


def steps_per_epoch(num_train: int, batch_size: int) -> int:
    """Full batches per epoch (the last partial batch is dropped: equal batches keep BN honest)."""
    return num_train // batch_size


class Salt(enum.IntEnum):
    """Every kind of random draw a trial makes, named in one place: each gets its own stream of seeds
    (`step_seed`), so adding a draw of one kind never shifts another's. The values are part of every
    stored result: changing one changes what a seed means."""

    EPOCH_ORDER = 1  # n = epoch
    AUGMENT = 2  # n = step
    REINIT = 3  # the reinit control's fresh initialisation, n = level
    INSTABILITY_COPY = 4  # the instability analysis's second data order, n = level
    SANITY = 5  # the randomisation sanity check's weights, n = 0
    PCBM_REFIT = 6  # the refit noise floor's fit seed and bootstrap, n = 0


def step_seed(seed: int, salt: Salt, n: int) -> int:
    """A seed for draw `n` of kind `salt` of a trial seeded `seed`."""
    return (seed * 1_000_003 + int(salt) * 7_919 + n) % (2**63 - 1)


def epoch_order(num: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of epoch `epoch`: a pure function of (seed, epoch), so resuming or rewinding to any step
    replays the very batches an uninterrupted run sees."""
    return torch.randperm(num, generator=torch.Generator().manual_seed(step_seed(seed, Salt.EPOCH_ORDER, epoch)))


def batch_at(data: Data, order: torch.Tensor, i: int, batch_size: int,
             g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch `i` of an epoch in `order` (indices on the data's device), augmented with generator `g`."""
    idx = order[i * batch_size : (i + 1) * batch_size]
    return augment(data.train_x[idx], data.spec.pad, data.spec.flip, g), data.train_y[idx]


def epoch_batches(data: Data, batch_size: int, g: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of augmented (x, y) batches in a seeded random order."""
    perm = torch.randperm(len(data.train_x), generator=g, device=g.device).to(data.train_x.device)
    for i in range(steps_per_epoch(len(perm), batch_size)):
        yield batch_at(data, perm, i, batch_size, g)
