"""Explainability-guided criteria: g = 0 is magnitude IMP exactly; g > 0 really changes the mask."""

import pytest
import torch

from lthray import data as data_mod
from lthray import masks, trial
from lthray.config import replace
from lthray.explain.cam import fidelity_loss, gradcam, gradcam_tensor
from lthray.explain.concepts import concept_bank, features, fit_pcbm
from lthray.methods import CRITERIA, ScoreContext, mix, percentile, scores_for
from lthray.models import build
from lthray.trial import TrialState, run_trial


@pytest.fixture(scope="module")
def ctx_extras(digits):
    model = build("convnet", 10, 0)
    gi = data_mod.guide_idx(digits, 32)
    gx, gy = digits.train_x[gi], digits.train_y[gi]
    bank = concept_bank(digits, "lthray-tiny-clip", "")
    pcbm = fit_pcbm(features(model, digits.train_x), bank.train_sim, digits.train_y, steps=20, C=0.5,
                    l1_ratio=0.5, seed=0)
    start = {k: v + 0.01 * torch.randn_like(v) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    maps = torch.from_numpy(gradcam(model, model.cam_layer, gx, gy))
    return model, {"guide_x": gx, "guide_y": gy, "guide_maps": maps,
                   "pcbm": pcbm, "concept_topk": 3, "start_weights": start}


@pytest.mark.parametrize("guide", ["cam", "concept", "movement"])
def test_g0_reproduces_magnitude_and_g_positive_changes_the_mask(ctx_extras, guide):
    model, extras = ctx_extras
    ctx = ScoreContext(model, masks.ones(model), 0, 1, **extras)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    base, g_scores = CRITERIA.get("magnitude")(ctx), CRITERIA.get(guide)(ctx)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # scoring changes nothing
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.isfinite(s).all() and (s >= 0).all() for s in g_scores.values())
    imp = masks.prune(base, ctx.mask, 0.6)
    same = masks.prune(mix(base, g_scores, 0.0, ctx.mask), ctx.mask, 0.6)
    assert all(torch.equal(imp[k], same[k]) for k in imp)
    for g in (0.5, 1.0):
        other = masks.prune(mix(base, g_scores, g, ctx.mask), ctx.mask, 0.6)
        changed = sum(int((imp[k] ^ other[k]).sum()) for k in imp)
        assert changed > 0, f"g={g} left the mask unchanged"
        assert masks.count(other) == masks.count(imp)  # same density, different weights


def test_movement_is_distance_from_the_start(ctx_extras):
    model, extras = ctx_extras
    ctx = ScoreContext(model, masks.ones(model), 0, 1, **extras)
    s = CRITERIA.get("movement")(ctx)
    for k, w in masks.prunable(model).items():
        assert torch.allclose(s[k], (w.detach() - extras["start_weights"][k]).abs())


def test_guided_method_with_g0_runs_the_same_trial_as_imp(tiny_cfg, tmp_path):
    imp = run_trial(tiny_cfg, tmp_path / "a", tmp_path / "ra")
    cam0 = run_trial(replace(tiny_cfg, **{"prune.method": "cam_guided"}), tmp_path / "b", tmp_path / "rb")
    ma = TrialState.load(tmp_path / "a" / trial.STATE).mask
    mb = TrialState.load(tmp_path / "b" / trial.STATE).mask
    assert all(torch.equal(ma[k], mb[k]) for k in ma)
    assert [r["test_acc"] for r in imp] == [r["test_acc"] for r in cam0]


def test_scores_for_uses_the_guide_only_when_g_is_positive(ctx_extras):
    model, extras = ctx_extras
    ctx = ScoreContext(model, masks.ones(model), 0, 1, **extras)
    a = scores_for("movement_guided", ctx, 0.0)
    b = scores_for("imp", ctx)
    assert all(torch.equal(a[k], percentile(b, ctx.mask)[k]) for k in a)
    top = max(float(v.max()) for v in b.values())
    assert all(torch.allclose(scores_for("movement_guided", ctx, 0.0, "max")[k], b[k] / top) for k in a)
    c = scores_for("movement_guided", ctx, 1.0)
    assert not all(torch.allclose(a[k], c[k]) for k in a)


def test_fidelity_loss_is_differentiable_and_zero_against_itself(ctx_extras):
    model, extras = ctx_extras
    x, y = extras["guide_x"][:8], extras["guide_y"][:8]
    own = gradcam_tensor(model, model.cam_layer, x, y).detach()
    up = torch.nn.functional.interpolate(own[:, None], size=x.shape[-2:], mode="nearest")[:, 0]
    assert float(fidelity_loss(model, model.cam_layer, x, y, up).detach()) == pytest.approx(0.0, abs=1e-4)
    loss = fidelity_loss(model, model.cam_layer, x, y, torch.rand(8, 32, 32))
    loss.backward()
    assert loss > 0.01
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    model.zero_grad(set_to_none=True)


def test_explanation_preserving_retraining_changes_training(tiny_cfg, tmp_path):
    plain = run_trial(tiny_cfg, tmp_path / "a", tmp_path / "ra")
    fid = run_trial(replace(tiny_cfg, **{"prune.lambda_fid": 1.0}), tmp_path / "b", tmp_path / "rb")
    assert plain[0]["test_acc"] == fid[0]["test_acc"]  # level 0 is dense training: no fidelity term
    wa = TrialState.load(tmp_path / "a" / trial.STATE).weights
    wb = TrialState.load(tmp_path / "b" / trial.STATE).weights
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)
    assert fid[-1]["lambda_fid"] == 1.0


def test_a_layer_the_guide_ignores_keeps_its_base_scores(ctx_extras):
    """Concept saliency never reaches the classifier head; pure guidance (g=1) must not prune it away."""
    model, extras = ctx_extras
    ctx = ScoreContext(model, masks.ones(model), 0, 1, **extras)
    base, guide = CRITERIA.get("magnitude")(ctx), CRITERIA.get("concept")(ctx)
    assert float(guide["fc.weight"].abs().sum()) == 0.0  # the objective stops at the features
    mixed = mix(base, guide, 1.0, ctx.mask)
    assert torch.equal(mixed["fc.weight"], percentile(base, ctx.mask)["fc.weight"])
    assert torch.equal(mix(base, guide, 1.0, ctx.mask, "max")["fc.weight"],
                       base["fc.weight"] / max(float(v.max()) for v in base.values()))
    new = masks.prune(mixed, ctx.mask, 0.5)
    assert 0 < int(new["fc.weight"].sum()) < new["fc.weight"].numel()
