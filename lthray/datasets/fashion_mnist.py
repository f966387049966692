"""Fashion-MNIST (Xiao et al. 2017): 60,000 train and 10,000 test 28x28 grayscale images, 10 classes.

Looked for, in order: $LTHRAY_DATA/fashion-mnist/, Debian's `dataset-fashion-mnist` package
(/usr/share/datasets/fashion-mnist, MIT), then torchvision's download when online. Every file is checked
before use: a truncated or corrupt one is named, never half-read.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lthray.datasets.base import DATASETS, DatasetSpec, DataUnavailableError

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DEBIAN = Path("/usr/share/datasets/fashion-mnist")
HOWTO = ("install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four files "
         "{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz from https://github.com/zalandoresearch/fashion-mnist "
         "into $LTHRAY_DATA/fashion-mnist/")


@dataclass(frozen=True)
class IdxFile:
    name: str
    gz_md5: str  # the .gz as published by Zalando (and fetched by torchvision)
    md5: str  # its decompressed content; Debian re-compresses the files, so only the content matches
    size: int  # decompressed bytes
    shape: tuple[int, ...]


FILES = {
    "train_x": IdxFile("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                       "f4a8712d7a061bf5bd6d2ca38dc4d50a", 47_040_016, (60_000, 28, 28)),
    "train_y": IdxFile("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe",
                       "9018921c3c673c538a1fc5bad174d6f9", 60_008, (60_000,)),
    "test_x": IdxFile("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79",
                      "8181f5470baa50b63fa0f6fddb340f0a", 7_840_016, (10_000, 28, 28)),
    "test_y": IdxFile("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310",
                      "15d484375f8d13e6eb1aabb0c3f46965", 10_008, (10_000,)),
}


class FashionMNISTError(RuntimeError):
    """The files are missing, truncated or corrupt; the message names the file and the fix."""


def candidates(root: Path) -> list[Path]:
    """Folders that may hold the four files, in the order they are tried."""
    return [root, DEBIAN]


def read_idx(path: Path, spec: IdxFile) -> np.ndarray:
    """The array in one verified idx .gz file (FashionMNISTError naming the file if it is damaged)."""
    raw = path.read_bytes()
    try:
        content = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # a cut-off or garbled gzip stream
        raise FashionMNISTError(f"{path} is truncated or corrupt ({e}); delete it and {HOWTO}") from None
    ok = hashlib.md5(raw).hexdigest() == spec.gz_md5 or (
        len(content) == spec.size and hashlib.md5(content).hexdigest() == spec.md5)
    if not ok:
        raise FashionMNISTError(
            f"{path} does not match the published Fashion-MNIST file ({len(content):,} bytes unpacked, "
            f"expected {spec.size:,} with MD5 {spec.md5}); delete it and {HOWTO}")
    header = 4 + 4 * len(spec.shape)
    return np.frombuffer(content, np.uint8, offset=header).reshape(spec.shape).copy()  # writable, for torch


def find(root: Path) -> Path | None:
    """The first candidate folder that holds all four files, else None."""
    for folder in candidates(root):
        if all((folder / f.name).is_file() for f in FILES.values()):
            return folder
    return None


def _download(root: Path) -> Path:
    """torchvision's FashionMNIST download (checks the published MD5s itself) into `root`."""
    from torchvision.datasets import FashionMNIST

    try:
        FashionMNIST(str(root.parent), train=True, download=True)
        FashionMNIST(str(root.parent), train=False, download=True)
    except Exception as e:  # offline: URLError/socket errors; a bad download: RuntimeError
        raise FashionMNISTError(f"Fashion-MNIST is not in {root} nor {DEBIAN} and could not be downloaded "
                                f"({type(e).__name__}); {HOWTO}") from None
    return root.parent / "FashionMNIST" / "raw"


def load(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(train_x N,28,28,1 uint8, train_y, test_x, test_y, class names) from the first source that has it."""
    folder = find(root)
    if folder is None and os.environ.get("LTHRAY_OFFLINE") != "1":
        folder = _download(root)
    if folder is None:
        raise FashionMNISTError(f"Fashion-MNIST is not in {root} nor {DEBIAN}; {HOWTO}")
    arr = {k: read_idx(folder / f.name, f) for k, f in FILES.items()}
    return (arr["train_x"][..., None], arr["train_y"].astype(np.int64), arr["test_x"][..., None],
            arr["test_y"].astype(np.int64), list(CLASSES))


def _spec_load(root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """$LTHRAY_DATA/fashion-mnist, Debian's package, or torchvision's download (see `load`)."""
    try:
        return load(root.parent / "fashion-mnist")
    except FashionMNISTError as e:
        raise DataUnavailableError(str(e)) from None


# Clothes mirror into clothes, so flips are label-preserving; 1 channel: models are built for grayscale.
DATASETS.register("fashion_mnist")(DatasetSpec("fashion_mnist", 60000, 10000, 10, flip=True, pad=2,
                                               load=_spec_load, channels=1, black_background=True))
