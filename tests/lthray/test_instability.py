"""Linear mode connectivity pieces: interpolation, BN re-estimation, the barrier, and the error path."""

import dataclasses

import pytest
import torch
from torch import nn

from lthray.config import InstabilityConfig
from lthray.instability import barrier, error_path, interpolate, recompute_bn
from lthray.models import build


def test_interpolation_hits_both_ends_exactly_and_keeps_integer_buffers_from_the_first():
    a = {"w": torch.tensor([0.0, 2.0]), "n": torch.tensor(7)}
    b = {"w": torch.tensor([4.0, -2.0]), "n": torch.tensor(9)}
    assert torch.equal(interpolate(a, b, 0.0)["w"], a["w"]) and torch.equal(interpolate(a, b, 1.0)["w"], b["w"])
    assert torch.equal(interpolate(a, b, 0.25)["w"], torch.tensor([1.0, 1.0]))
    assert int(interpolate(a, b, 0.5)["n"]) == 7


def test_barrier_is_the_peak_above_the_mean_of_the_ends():
    assert barrier([0.1, 0.3, 0.2]) == pytest.approx(0.15)
    assert barrier([0.2, 0.1, 0.2]) == pytest.approx(0.0)  # a dip is no barrier: the ends are the peak
    assert barrier([0.1, 0.12, 0.3]) == pytest.approx(0.1)


def test_bn_statistics_are_re_estimated_as_the_plain_average_over_the_batches():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g) * 3 + 5
    bn = nn.BatchNorm1d(3)
    model = nn.Sequential(bn)
    bn.running_mean.fill_(123.0)
    recompute_bn(model, x, batches=4, batch_size=16, seed=0)  # 4 x 16 = every image once
    assert torch.allclose(bn.running_mean, x.mean(0), atol=1e-5)
    per_batch_var = torch.stack([x[i::4].var(0) for i in range(4)])  # any 4 equal batches: compare the mean
    assert torch.allclose(bn.running_var, per_batch_var.mean(0), rtol=0.5)  # unbiased batch variances
    assert bn.momentum == 0.1 and model.training  # settings and mode are put back


def test_two_identical_ends_have_no_barrier_and_the_model_keeps_the_first(digits):
    model = build("convnet", 10, 0)
    a = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = InstabilityConfig(enabled=True, points=11, bn_batches=2, test_size=100)
    errors = error_path(model, a, a, digits, cfg, batch_size=32, seed=0)
    assert len(errors) == 11 and max(errors) - min(errors) < 1e-12 and barrier(errors) == pytest.approx(0.0)
    assert all(torch.equal(model.state_dict()[k], a[k]) for k in a)


def test_the_path_between_two_different_networks_is_measured_at_every_point(digits):
    a = build("convnet", 10, 0).state_dict()
    b = build("convnet", 10, 1).state_dict()
    model = build("convnet", 10, 0)
    cfg = dataclasses.replace(InstabilityConfig(), points=11, bn_batches=2)
    errors = error_path(model, a, b, digits, cfg, batch_size=32, seed=0)
    assert len(errors) == 11 and all(0 <= e <= 1 for e in errors)


@pytest.mark.parametrize("kw, words", [({"points": 5}, "[11, 101]"), ({"bn_batches": 0}, "[1, 1000]"),
                                       ({"test_size": -1}, ">= 0"), ({"enabled": "yes"}, "true or false")])
def test_bad_instability_settings_are_refused_with_what_is_allowed(kw, words):
    from lthray.config import ConfigError

    with pytest.raises(ConfigError) as e:
        InstabilityConfig(**kw)
    assert words in str(e.value) and "instability." in str(e.value)
