"""Weights over training: movement of the kept weights and the first layer's filters, hand-checked."""

import numpy as np
import pytest
import torch

from lthray import masks, weights
from lthray.models import build


def test_movement_counts_kept_weights_only_against_their_start():
    m = build("convnet", 10, 0, 1)
    start = {k: v.clone() for k, v in m.state_dict().items()}
    mask = masks.ones(m)
    first = weights.first_conv(m)
    assert first == "body.0.0.weight"
    mask[first][0] = False  # filter 0 is pruned: its (large) move must not count
    with torch.no_grad():
        params = masks.prunable(m)
        params[first][0] += 100.0
        rms = start["fc.weight"].pow(2).mean().sqrt()
        params["fc.weight"][:] += 0.5 * rms  # every fc weight moves half its layer's RMS: not still
    cols = weights.columns(m, start, mask)
    kept = sum(int(v.sum()) for v in mask.values())
    fc = mask["fc.weight"].numel()
    assert cols["weights_still"] == pytest.approx((kept - fc) / kept)  # all but fc's stayed where they were
    q = cols["weight_move_quantiles"]
    assert len(q) == len(weights.QUANTILES) and q[0] == 0.0 and q[-1] < 100  # the pruned filter is left out
    assert cols["first_filters_shape"] == [16, 1, 3, 3] and len(cols["first_filters"]) == 16 * 9
    assert np.allclose(cols["first_filters"][:9], (start[first][0] + 100).flatten().tolist())


def test_a_trial_row_carries_its_weights(tiny_cfg, tmp_path):
    from lthray.trial import run_trial

    rows = run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r")
    for r in rows:
        assert 0 <= r["weights_still"] <= 1 and int(np.prod(r["first_filters_shape"])) == len(r["first_filters"])
        assert r["weight_move_quantiles"] == sorted(r["weight_move_quantiles"]) and r["weight_move_quantiles"][-1] > 0
    zeros = [sum(1 for v in r["first_filters"] if v == 0.0) for r in rows]
    assert zeros[0] == 0 and zeros[-1] > zeros[0]  # pruned first-layer weights are exact zeros
