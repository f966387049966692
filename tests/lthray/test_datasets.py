"""Fashion-MNIST: verified idx files, the first source that has them, and bad files named with the fix."""

import gzip
import hashlib

import numpy as np
import pytest

from lthray import data
from lthray.__main__ import main
from lthray.datasets import fashion_mnist


def _idx(path, arr: np.ndarray) -> fashion_mnist.IdxFile:
    header = (0x0800 + arr.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    content = header + arr.astype(np.uint8).tobytes()
    raw = gzip.compress(content)
    path.write_bytes(raw)
    return fashion_mnist.IdxFile(path.name, hashlib.md5(raw).hexdigest(), hashlib.md5(content).hexdigest(),
                                 len(content), arr.shape)


def test_read_idx_parses_and_verifies_a_generated_file(tmp_path):
    arr = np.arange(3 * 4 * 5).reshape(3, 4, 5) % 256
    spec = _idx(tmp_path / "x.gz", arr)
    assert np.array_equal(fashion_mnist.read_idx(tmp_path / "x.gz", spec), arr)
    # re-compressed (as Debian ships it): other .gz bytes, same content -> accepted by the content MD5
    (tmp_path / "y.gz").write_bytes(gzip.compress(gzip.decompress((tmp_path / "x.gz").read_bytes()), mtime=1))
    assert np.array_equal(fashion_mnist.read_idx(tmp_path / "y.gz", spec), arr)


@pytest.mark.parametrize("damage, words", [
    (lambda b: b[: len(b) // 2], "truncated or corrupt"),
    (lambda b: b"not gzip at all", "truncated or corrupt"),
    (lambda b: gzip.compress(gzip.decompress(b)[:-7] + b"\x00" * 7), "does not match"),
])
def test_a_damaged_file_is_named_with_the_fix(tmp_path, damage, words):
    spec = _idx(tmp_path / "x.gz", np.ones((2, 3, 3)))
    (tmp_path / "x.gz").write_bytes(damage((tmp_path / "x.gz").read_bytes()))
    with pytest.raises(fashion_mnist.FashionMNISTError, match=words) as e:
        fashion_mnist.read_idx(tmp_path / "x.gz", spec)
    assert str(tmp_path / "x.gz") in str(e.value) and "apt-get install dataset-fashion-mnist" in str(e.value)


def test_the_real_dataset_loads_from_the_debian_package(tmp_path, monkeypatch):
    """Needs Debian's dataset-fashion-mnist (make test installs it)."""
    monkeypatch.setenv("LTHRAY_DATA", str(tmp_path))  # nothing there: falls through to Debian's copy
    assert fashion_mnist.find(tmp_path / "fashion-mnist") == fashion_mnist.DEBIAN
    trx, try_, tex, tey, classes = fashion_mnist.load(tmp_path / "fashion-mnist")
    assert trx.shape == (60000, 28, 28, 1) and tex.shape == (10000, 28, 28, 1)
    assert np.bincount(try_).tolist() == [6000] * 10 and np.bincount(tey).tolist() == [1000] * 10
    assert classes[0] == "T-shirt/top" and classes[9] == "Ankle boot"
    d = data.load("fashion_mnist", 8, "cpu", 1000)
    assert d.train_x.shape == (1000, 1, 28, 28) and np.bincount(d.train_y.numpy()).tolist() == [100] * 10


def test_a_corrupt_local_copy_wins_over_debian_and_exits_2_writing_nothing(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for f in fashion_mnist.FILES.values():
        (folder / f.name).write_bytes(b"\x1f\x8b\x08\x00 cut off")
    monkeypatch.setenv("LTHRAY_DATA", str(tmp_path))
    data.load.cache_clear()
    work = tmp_path / "w"
    assert main(["--workdir", str(work), "--set", "data.dataset=fashion_mnist"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train-images-idx3-ubyte.gz" in err[0] and "apt-get install" in err[0]
    assert not work.exists()
