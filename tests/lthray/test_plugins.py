"""Plugins: a model and a dataset of the user's, registered without editing lthray; every error one line."""

import textwrap

import pytest
import torch

from lthray import plugins
from lthray.data import DATASETS
from lthray.models import MODELS, CamModel, build

EXAMPLE = "examples/plugin_resnet18.py"


@pytest.fixture
def example():
    from pathlib import Path

    path = str(Path(__file__).resolve().parents[2] / EXAMPLE)
    plugins.load(path)
    return path


def test_the_example_registers_a_torchvision_resnet_and_a_dataset(example):
    assert "tv_resnet18" in MODELS and "stripes" in DATASETS
    m = build("tv_resnet18", 4, 0, 3)
    assert isinstance(m, CamModel) and m.cam_layer is m.net.layer4
    x = torch.randn(2, 3, 16, 16)
    assert m.features(x).shape == (2, 512) and m(x).shape == (2, 4)
    assert torch.allclose(m(x), m.fc(m.features(x)))
    spec = DATASETS.get("stripes")
    assert (spec.num_train, spec.num_test, spec.num_classes, spec.channels) == (512, 128, 4, 3)
    assert plugins.load(example) == plugins.load(example)  # imported once per process


def test_a_trial_runs_on_the_plugins_model_and_data(example, tmp_path):
    from lthray.config import from_flat
    from lthray.trial import run_trial

    cfg = from_flat({"model.name": "tv_resnet18", "data.dataset": "stripes", "data.probe_size": 8, "train.epochs": 1,
                     "prune.levels": 1, "prune.rate": 0.5, "explain.faithfulness": "confidence_drop",
                     "explain.guide_size": 16, "explain.fid_batch": 8, "explain.same_init_floor": False,
                     "concepts.enabled": False})
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r")
    assert [r["level"] for r in rows] == [0, 1] and rows[1]["density"] == pytest.approx(0.5, abs=1e-3)
    assert rows[0]["test_acc"] > 0.25 and rows[1]["cam_spearman"] is not None


@pytest.mark.parametrize("source, words", [
    ("raise RuntimeError('no GPU here')", "failed to import (RuntimeError: no GPU here)"),
    ("import lthray.plugins as lp\nlp.model('convnet')(lambda n, c: None)", "registers model 'convnet', which exists"),
    ("import torch, lthray.plugins as lp\nlp.wrap(torch.nn.Sequential(torch.nn.Linear(2, 2)), 'layer4', '0')",
     "has no module 'layer4'"),
])
def test_a_bad_plugin_is_one_line_naming_it(tmp_path, source, words):
    bad = tmp_path / "bad_plugin.py"
    bad.write_text(textwrap.dedent(source))
    with pytest.raises(plugins.PluginError) as e:
        plugins.load(str(bad))
    assert words in str(e.value) and "\n" not in str(e.value)
    assert str(bad) in str(e.value) or "wrap" in str(e.value)


def test_a_model_that_is_no_cam_model_is_refused_when_built(tmp_path):
    mod = tmp_path / "plain_plugin.py"
    mod.write_text("import torch, lthray.plugins as lp\nlp.model('plain_net')(lambda n, c: torch.nn.Linear(2, n))\n")
    plugins.load(str(mod))
    try:
        with pytest.raises(plugins.PluginError, match="return lthray.plugins.wrap"):
            build("plain_net", 10, 0, 3)
    finally:
        MODELS.unregister("plain_net")


def test_the_command_line_refuses_a_missing_plugin_in_one_line(tmp_path, capsys):
    from lthray.__main__ import main

    assert main(["--plugin", str(tmp_path / "nope.py"), "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such file" in err[0]
    assert not (tmp_path / "results").exists()


def test_a_dataset_that_does_not_fit_is_refused_naming_its_size(monkeypatch):
    from lthray import data

    monkeypatch.setattr(data, "free_bytes", lambda device: 1000)
    with pytest.raises(data.DataUnavailableError, match=r"dataset digits needs 0\.\d GiB on cpu as float32"):
        data.to_tensors(DATASETS.get("digits"), *(lambda t: ((t[0], t[1]), (t[2], t[3]), t[4]))(
            DATASETS.get("digits").load(None)), probe_size=4, device="cpu")
