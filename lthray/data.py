"""Datasets as tensors on the device (airbench style): no DataLoader, no workers. The datasets themselves
are registered in `lthray.datasets` (one module each).

The whole train set lives on the device; an epoch is a seeded permutation cut into index slices and
augmentation (random translate, optional flip) is done on the batch tensor in one vectorised op.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from lthray.datasets import DATASETS, DatasetSpec, DataUnavailableError, cache_dir  # noqa: F401 (re-exported)


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
    check_fits(spec.name, train[0].size + test[0].size, dtype, device)

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


def free_bytes(device: torch.device) -> int | None:
    """Memory free for new tensors on `device` (a CUDA device's free memory, or the host's available RAM);
    None where it cannot be told."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not Linux
        return None


def check_fits(name: str, values: int, dtype: torch.dtype, device: torch.device) -> None:
    """The whole dataset is held on `device` as `dtype` (the training loop reads it as device tensors, as
    airbench does): refuse one that cannot fit, in one line naming the sizes, instead of an out-of-memory
    crash mid-trial. Conversion needs about twice the final size on the host for a moment."""
    need = values * torch.empty(0, dtype=dtype).element_size() * (2 if device.type == "cpu" else 1)
    free = free_bytes(device)
    if free is not None and need > free:
        raise DataUnavailableError(
            f"dataset {name} needs {need / 2**30:.1f} GiB on {device} as {str(dtype).removeprefix('torch.')} and "
            f"{free / 2**30:.1f} GiB is free: set data.train_size to a subset, or use a device with more memory")


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
        f = torch.rand(n, generator=g, device=g.device).to(x.device) < 0.5  # .to: a no-op when g is on x's device
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
    return x.contiguous(memory_format=memory_format(x.dtype))


def memory_format(dtype: torch.dtype) -> torch.memory_format:
    """The layout a trial's model and batches use: channels-last (NHWC) for float32, on CPU as on GPU.

    Measured (`python -m bench.run`, row "channels-last"): a convnet step at batch 128 takes 0.70x the
    time of the NCHW step on a 2-core EPYC, mostly because oneDNN's NCHW max-pool and batch norm are
    slow there. float64 stays NCHW: oneDNN has no float64 kernels, and float64 mode exists for exactness.
    """
    return torch.channels_last if dtype == torch.float32 else torch.contiguous_format


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
    SHUFFLE = 7  # the shuffled-mask control's positions, n = level


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
