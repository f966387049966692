import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from lthray import data, datasets


def test_digits_is_real_embedded_data_with_a_fixed_split(digits):
    assert digits.train_x.shape == (1437, 3, 32, 32) and digits.test_x.shape == (360, 3, 32, 32)
    assert digits.train_x.dtype == torch.float32
    # normalised with train statistics
    assert digits.train_x.mean().abs() < 1e-4 and (digits.train_x.std() - 1).abs() < 1e-3
    # every class present in both splits (stratified), the same split on every load
    assert set(digits.train_y.tolist()) == set(range(10)) == set(digits.test_y.tolist())
    from sklearn.datasets import load_digits

    raw = load_digits()
    assert len(digits.train_y) + len(digits.test_y) == len(raw.target)
    again = datasets.digits.load(Path("."))
    assert np.array_equal(again[1], digits.train_y.numpy())


def test_probe_set_is_fixed_and_sorted(digits):
    other = data.to_tensors(digits.spec, *[(np.zeros((360, 32, 32, 3), np.uint8), np.zeros(360, np.int64))] * 2,
                            ["c"] * 10, 8, "cpu")
    assert torch.equal(other.probe_idx, digits.probe_idx)  # depends on the test-set size only
    assert len(digits.probe_idx) == 8 and torch.all(digits.probe_idx[1:] > digits.probe_idx[:-1])


def test_augment_translates_and_flips_without_changing_content():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(data.augment(x, 0, False, g), x)
    flipped = data.augment(x, 0, True, torch.Generator().manual_seed(1))
    for i in range(2):
        assert torch.equal(flipped[i], x[i]) or torch.equal(flipped[i], x[i].flip(2))
    shifted = data.augment(x, 2, False, torch.Generator().manual_seed(0))
    assert shifted.shape == x.shape
    # each output is an 8x8 window of the reflect-padded input
    xp = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        assert any(torch.equal(shifted[i], xp[i, :, dy:dy + 8, dx:dx + 8]) for dy in range(5) for dx in range(5))


def test_cifar10_offline_fails_with_a_clear_message(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    def no_network(*a, **k):
        raise OSError("[Errno 101] Network is unreachable")

    monkeypatch.setattr(tvd.CIFAR10, "download", no_network)
    with pytest.raises(data.DataUnavailableError) as e:
        datasets.cifar10.load(tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg and "cifar-10-python.tar.gz" in msg and "LTHRAY_DATA" in msg


def test_cifar10_files_on_disk_become_device_tensors(tmp_path, monkeypatch):
    """The real torchvision loading path, on CIFAR-format files generated here (no download)."""
    import torchvision.datasets as tvd

    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for n in names:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(rng.integers(0, 10, 4))}
        with open(root / n, "wb") as fh:
            pickle.dump(batch, fh)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    import torchvision.datasets.cifar as tv_cifar

    # torchvision checks md5s of the real files; these are generated stand-ins in the same format
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    trx, try_, tex, tey, classes = datasets.cifar10.load(tmp_path)
    assert trx.shape == (20, 32, 32, 3) and tex.shape == (4, 32, 32, 3) and classes[3] == "class3"
    d = data.to_tensors(data.DATASETS.get("cifar10"), (trx, try_), (tex, tey), classes, 2, "cpu")
    assert d.train_x.shape == (20, 3, 32, 32) and d.test_y.dtype == torch.long


def test_epoch_batches_cover_the_data_once(digits):
    g = torch.Generator().manual_seed(0)
    ys = torch.cat([y for _, y in data.epoch_batches(digits, 128, g)])
    assert len(ys) == (1437 // 128) * 128
