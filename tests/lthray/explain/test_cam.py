import numpy as np
import pytest
import torch

from lthray.config import ExplainConfig
from lthray.explain.cam import explain, faithfulness, gradcam, spearman, topk_iou
from lthray.models import build


def test_gradcam_maps_cover_the_input_and_leave_the_model_as_found(digits):
    model = build("convnet", 10, 0).train()
    x, y = digits.probe_x, digits.probe_y
    maps = gradcam(model, model.cam_layer, x, y)
    assert maps.shape == (len(x), 32, 32) and maps.dtype == np.float32
    assert maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert model.training  # pytorch-grad-cam switches to eval; we switch back
    assert all(p.grad is None for p in model.parameters())
    # the hooks are released: a forward pass no longer stores activations anywhere
    assert not model.cam_layer._forward_hooks


def test_similarity_measures():
    rng = np.random.default_rng(0)
    a = rng.random((3, 8, 8)).astype(np.float32)
    assert np.allclose(spearman(a, a), 1.0)
    assert np.allclose(spearman(a, -a), -1.0)
    assert np.allclose(spearman(a, a**3 + 2), 1.0)  # rank based: any monotone map gives 1
    assert np.allclose(topk_iou(a, a, 0.2), 1.0)
    flipped = 1 - a  # top-20% of a are the bottom-20% of 1-a: disjoint
    assert np.allclose(topk_iou(a, flipped, 0.2), 0.0)
    flat = np.zeros((1, 4, 4))
    assert spearman(flat, a[:1, :4, :4])[0] == 0.0  # a flat map agrees on no ranking
    assert spearman(flat, flat + 0.5)[0] == 1.0  # two flat maps are the same explanation


def test_topk_iou_counts_exactly():
    a = np.zeros((1, 10, 10))
    b = np.zeros((1, 10, 10))
    a[0, 0, :] = 1  # top 10 pixels of a: row 0
    b[0, 0, :5] = 1
    b[0, 1, :5] = 1  # top 10 of b: half of row 0, half of row 1
    assert topk_iou(a, b, 0.1)[0] == pytest.approx(5 / 15)


@pytest.mark.parametrize("kind", ["road", "confidence_drop"])
def test_faithfulness_is_finite_and_deterministic(digits, kind):
    model = build("convnet", 10, 0)
    x, y = digits.probe_x[:4], digits.probe_y[:4]
    maps = gradcam(model, model.cam_layer, x, y)
    cfg = ExplainConfig(faithfulness=kind, road_percentiles=(20, 60))
    f1 = faithfulness(model, x, y, maps, cfg)
    f2 = faithfulness(model, x, y, maps, cfg)
    assert f1.shape == (4,) and np.isfinite(f1).all() and np.array_equal(f1, f2)
    assert model.training


def test_explain_against_itself_is_perfect(digits):
    model = build("convnet", 10, 0)
    drop = ExplainConfig(faithfulness="confidence_drop")
    rep = explain(model, model.cam_layer, digits.probe_x, digits.probe_y, None, drop)
    assert rep.spearman == pytest.approx(1.0) and rep.iou == pytest.approx(1.0)
    other = build("convnet", 10, 1)
    rep2 = explain(other, other.cam_layer, digits.probe_x, digits.probe_y, rep.maps, drop)
    assert rep2.spearman < 0.99 and rep2.iou < 0.99
    torch.testing.assert_close(torch.tensor(rep.maps), torch.tensor(rep.maps))
