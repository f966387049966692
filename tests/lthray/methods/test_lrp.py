"""LRP-guided pruning: the relevance of every weight against a hand computation of the Epsilon rule on a
tiny network, and lrp_guided as a registered guided method that runs in a trial."""

import numpy as np
import pytest
import torch
from torch import nn

from lthray import masks
from lthray.methods import METHODS, ScoreContext, scores_for
from lthray.methods.lrp import EPSILON, weight_relevance


def _hand(w1: np.ndarray, w2: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LRP-epsilon by hand for x -> relu(W1 x) -> W2 a, relevance 1 on the true class of each image."""
    def stab(z):
        return z + EPSILON * np.where(z >= 0, 1.0, -1.0)

    r1, r2 = np.zeros_like(w1), np.zeros_like(w2)
    for xi, c in zip(x, y, strict=True):
        z1 = w1 @ xi
        a1 = np.maximum(z1, 0)
        z2 = w2 @ a1
        rel_out = np.eye(len(z2))[c]  # relevance 1 on the true class
        msg2 = a1[None, :] * w2 * (rel_out / stab(z2))[:, None]  # relevance through each weight of layer 2
        r2 += msg2
        rel_a1 = msg2.sum(0)  # ReLU passes it on
        r1 += xi[None, :] * w1 * (rel_a1 / stab(z1))[:, None]
    return r1, r2


def test_weight_relevance_matches_the_epsilon_rule_by_hand():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False))
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 1, 0, 1])
    net = net.double()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    got = weight_relevance(net, x, y)
    r1, r2 = _hand(net[0].weight.detach().numpy(), net[2].weight.detach().numpy(), x.numpy(), y.numpy())
    assert np.allclose(got["0.weight"].numpy(), r1, atol=1e-9) and np.allclose(got["2.weight"].numpy(), r2, atol=1e-9)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # a copy was explained
    # conservation: each image's unit of relevance reaches the last layer's weights (epsilon absorbs ~1e-5)
    assert float(got["2.weight"].sum()) == pytest.approx(len(x), rel=1e-4)


def test_lrp_guided_is_a_guided_method_whose_g0_is_imp(digits):
    from lthray.models import build

    m = METHODS.get("lrp_guided")
    assert m.guided and m.needs.guide_images and "Yeom" in m.paper
    model = build("convnet", 10, 0)
    ctx = ScoreContext(model, masks.ones(model), 0, 1, guide_x=digits.train_x[:32], guide_y=digits.train_y[:32])
    imp = masks.prune(scores_for("imp", ctx), ctx.mask, 0.5)
    g0 = masks.prune(scores_for("lrp_guided", ctx, 0.0), ctx.mask, 0.5)
    g1 = masks.prune(scores_for("lrp_guided", ctx, 1.0), ctx.mask, 0.5)
    assert all(torch.equal(imp[k], g0[k]) for k in imp)
    assert any(not torch.equal(imp[k], g1[k]) for k in imp)


def test_a_trial_of_lrp_guided_runs(tiny_cfg, tmp_path):
    from lthray.config import replace
    from lthray.trial import run_trial

    rows = run_trial(replace(tiny_cfg, **{"prune.method": "lrp_guided", "prune.guidance_weight": 0.5}),
                     tmp_path / "w", tmp_path / "r")
    assert [r["level"] for r in rows] == [0, 1, 2] and all(r["status"] == "ok" for r in rows)
    assert rows[2]["density"] == pytest.approx(0.25, abs=1e-3)
