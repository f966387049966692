"""The datasets lthray knows, one module each (like `models/` and `methods/`). A new one is a module that
registers a `DatasetSpec` (see docs/extending.md); importing this package registers the built-in ones."""

from lthray.datasets import cifar10, digits, fashion_mnist
from lthray.datasets.base import DATASETS, DatasetSpec, DataUnavailableError, cache_dir

__all__ = ["DATASETS", "DataUnavailableError", "DatasetSpec", "cache_dir", "cifar10", "digits", "fashion_mnist"]
