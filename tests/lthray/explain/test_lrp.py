"""LRP maps through zennit: relevance flows only where the network's evidence is, the model is never
changed, and every row carries LRP's fidelity and localisation columns beside Grad-CAM's."""

import numpy as np
import pytest
import torch
from torch import nn

from lthray.explain.lrp import lrp_maps


class HalfBlind(nn.Module):
    """A 1x1 conv + BN + ReLU whose head reads only the left half of the image."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU(inplace=True))
        self.fc = nn.Linear(16, 2)
        with torch.no_grad():
            self.body[0].weight.fill_(1.0)
            w = torch.zeros(2, 4, 4)
            w[:, :, :2] = torch.tensor([1.0, -1.0])[:, None, None]
            self.fc.weight.copy_(w.reshape(2, 16))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.body(x).flatten(1))


def test_relevance_lies_only_where_the_class_evidence_is_and_the_model_is_untouched():
    torch.manual_seed(0)
    m = HalfBlind().eval()
    x = torch.rand(3, 1, 4, 4) + 0.1
    before = {k: v.clone() for k, v in m.state_dict().items()}
    maps = lrp_maps(m, x, torch.zeros(3, dtype=torch.long))
    assert maps.shape == (3, 4, 4) and maps.min() >= 0 and np.allclose(maps.max(axis=(1, 2)), 1.0)
    assert (maps[:, :, 2:] == 0).all() and (maps[:, :, :2] > 0).all()  # the blind half gets nothing
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert m.body[2].inplace and m.body[0].bias is None


def test_rows_carry_lrp_beside_grad_cam_and_it_can_be_switched_off(tmp_path, tiny_cfg):
    from lthray.config import replace
    from lthray.trial import run_trial

    cfg = replace(tiny_cfg, **{"data.dataset": "fashion_mnist", "data.train_size": 1000, "concepts.enabled": False,
                               "data.probe_size": 16})
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r")
    assert rows[0]["lrp_spearman"] == pytest.approx(1.0)  # the dense model's maps are LRP's reference
    for r in rows:
        assert -1 <= r["lrp_spearman"] <= 1 and 0 <= r["lrp_energy_inside"] <= 1 and 0 <= r["lrp_pointing"] <= 1
        assert 0 < r["lrp_concentration"] <= 1
    assert rows[1]["lrp_spearman"] < 1.0
    off = run_trial(replace(cfg, **{"explain.lrp": False}), tmp_path / "w2", tmp_path / "r2")
    assert all(r["lrp_spearman"] is None and r["lrp_energy_inside"] is None for r in off)
    assert [r["cam_spearman"] for r in off] == [r["cam_spearman"] for r in rows]  # LRP changes nothing else


def test_lrp_of_a_linear_read_out_is_input_times_weight_in_closed_form():
    # Flat over a 1x1 convolution hands each pixel its unit's relevance; Epsilon in the linear head gives
    # unit i the share a_i w_ci / sum_j a_j w_cj of the logit = a_i w_ci (bias 0, BN the identity).
    torch.manual_seed(3)
    m = HalfBlind().eval()
    with torch.no_grad():
        m.fc.weight.copy_(torch.randn(2, 16))  # both signs in each class's row
    x = torch.rand(2, 1, 4, 4) + 0.1
    maps = lrp_maps(m, x, torch.tensor([0, 1]))
    bn = m.body[1]
    a = x[:, 0].flatten(1) / torch.sqrt(bn.running_var + bn.eps)  # BN in eval: running mean 0, var 1
    want = (a * m.fc.weight.detach()[[0, 1]]).clamp(min=0)
    want = (want / want.amax(1, keepdim=True)).reshape(2, 4, 4).numpy()
    assert np.allclose(maps, want, atol=1e-4)
