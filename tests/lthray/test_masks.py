import pytest
import torch

from lthray import masks
from lthray.models import build


def test_prunable_is_conv_and_linear_weights_only():
    model = build("resnet20", 10, 0)
    names = masks.prunable(model)
    assert names and all(k.endswith(".weight") for k in names)
    kinds = {type(dict(model.named_modules())[k.rsplit(".", 1)[0]]).__name__ for k in names}
    assert kinds == {"Conv2d", "Linear"}  # never BatchNorm, never biases
    assert "fc.bias" not in names and not any("bn" in k for k in names)


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_prune_removes_exact_fraction_and_nests(scope):
    model = build("convnet", 10, 0)
    mask = masks.ones(model)
    kept0, total = masks.count(mask)
    assert kept0 == total
    scores = {k: w.detach().abs() for k, w in masks.prunable(model).items()}
    prev = mask
    for _ in range(1, 4):
        new = masks.prune(scores, prev, 0.2, scope)
        kept_prev, _ = masks.count(prev)
        kept, _ = masks.count(new)
        if scope == "global":
            assert kept == round(kept_prev * 0.8)
        else:
            for k in new:
                assert int(new[k].sum()) == round(int(prev[k].sum()) * 0.8)
        for k in new:  # nested: nothing comes back to life
            assert not (new[k] & ~prev[k]).any()
        prev = new
    assert masks.density(prev) == pytest.approx(0.8**3, abs=2e-3)


def test_global_prune_removes_the_smallest_scores():
    scores = {"a": torch.tensor([0.1, 5.0, 3.0]), "b": torch.tensor([[0.2, 4.0], [0.05, 1.0]])}
    mask = {k: torch.ones_like(v, dtype=torch.bool) for k, v in scores.items()}
    new = masks.prune(scores, mask, 3 / 7, "global")  # 7 weights -> keep round(7*4/7)=4
    assert new["a"].tolist() == [False, True, True]
    assert new["b"].tolist() == [[False, True], [False, True]]


def test_pruned_weights_cannot_be_revived_by_high_scores():
    scores = {"a": torch.tensor([9.0, 1.0, 2.0, 3.0])}
    mask = {"a": torch.tensor([False, True, True, True])}
    new = masks.prune(scores, mask, 1 / 3, "global")
    assert new["a"].tolist() == [False, False, True, True]


def test_prune_rejects_bad_input():
    s = {"a": torch.rand(4)}
    m = {"a": torch.ones(4, dtype=torch.bool)}
    with pytest.raises(ValueError, match="fraction"):
        masks.prune(s, m, 1.0)
    with pytest.raises(ValueError, match="scope"):
        masks.prune(s, m, 0.5, "per-neuron")
    with pytest.raises(ValueError, match="different weights"):
        masks.prune({"b": torch.rand(4)}, m, 0.5)


def test_apply_zeroes_exactly_the_pruned_weights():
    model = build("convnet", 10, 0)
    scores = {k: torch.rand(w.shape) for k, w in masks.prunable(model).items()}
    mask = masks.prune(scores, masks.ones(model), 0.7)
    masks.apply(model, mask)
    for k, w in masks.prunable(model).items():
        assert (w[~mask[k]] == 0).all()
        assert (w[mask[k]] != 0).all()
