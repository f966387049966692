"""The model-randomisation sanity check: maps that depend on the weights change when the weights are
randomised; a 'method' that ignores the weights (the input's own intensity) keeps its maps and fails."""

import numpy as np
import pytest
import torch

from lthray.explain import sanity
from lthray.explain.cam import gradcam
from lthray.models import build


def test_randomised_changes_every_weight_and_leaves_the_model_alone():
    m = build("convnet", 10, 0, 1)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    r = sanity.randomised(m, seed=7)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert not torch.equal(r.body[0][0].weight, m.body[0][0].weight) and not r.training
    assert torch.equal(sanity.randomised(m, seed=7).fc.weight, r.fc.weight)  # seeded


def test_a_map_that_ignores_the_weights_fails_and_grad_cam_of_a_trained_model_changes(digits, tmp_path, tiny_cfg):
    x, y = digits.probe_x, digits.probe_y
    m = build("convnet", 10, 0)

    def intensity(model, xb, yb):  # an 'explanation' that never looks at the model
        return xb.abs().sum(1).numpy()

    s = sanity.similarity(intensity, m, x, y, seed=1)
    assert s == pytest.approx(1.0) and sanity.verdict(s, s, s) == "fails"
    assert sanity.verdict(0.1, 0.05, 0.2) == "passes" and sanity.verdict(0.5, 0.2, 0.8) == "inconclusive"
    from lthray.trial import run_trial

    rows = run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r")
    assert rows[0]["cam_sanity_spearman"] is not None and rows[0]["lrp_sanity_spearman"] is not None
    assert all(r["cam_sanity_spearman"] is None for r in rows[1:])  # once per trial, at level 0
    assert rows[0]["cam_sanity_spearman"] < 0.9  # the trained maps are not the random network's
    assert rows[0]["cascade_layers"] == ["fc", "body.5.0", "body.4.0", "body.2.0", "body.0.0"]
    assert len(rows[0]["cam_cascade_spearman"]) == len(rows[0]["lrp_cascade_spearman"]) == 5
    assert all(r["cascade_layers"] is None for r in rows[1:])
    cam = sanity.similarity(lambda mm, xb, yb: gradcam(mm, mm.cam_layer, xb, yb), m, x, y, seed=1)
    assert np.isfinite(cam)


def test_the_cascade_randomises_from_the_output_down_and_finds_the_layer_a_map_reads():
    """A 'method' that reads only the first convolution's output keeps its maps until that layer (the last
    one the cascade reaches) is randomised: the curve says which layers a method is blind to."""
    m = build("convnet", 10, 0, 1).eval()
    x, y = torch.randn(6, 1, 16, 16, generator=torch.Generator().manual_seed(0)), torch.zeros(6, dtype=torch.long)
    before = {k: v.clone() for k, v in m.state_dict().items()}

    def first_layer(model, xb, yb):
        with torch.no_grad():
            return model.body[0][0](xb).abs().sum(1).numpy()

    trained = first_layer(m, x, y)
    names, curve = sanity.cascade(first_layer, m, x, y, seed=3, trained=trained)
    assert names == ["fc", "body.5.0", "body.4.0", "body.2.0", "body.0.0"]
    assert curve[:4] == pytest.approx([1.0] * 4) and curve[4] < 0.9
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # the model is left alone
    assert sanity.cascade(first_layer, m, x, y, seed=3, trained=trained) == (names, curve)  # seeded
    groups = dict(sanity._weight_groups(m))
    assert [type(g).__name__ for g in groups["body.0.0"]] == ["Conv2d", "BatchNorm2d"] and len(groups["fc"]) == 1
