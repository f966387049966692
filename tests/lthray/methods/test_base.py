import torch

from lthray import masks
from lthray.methods import CRITERIA, METHODS, Method, ScoreContext, mix, normalise, scores_for
from lthray.models import build


def _ctx(seed=0, level=1):
    model = build("convnet", 10, 0)
    return ScoreContext(model, masks.ones(model), seed, level)


def test_magnitude_is_abs_weight():
    ctx = _ctx()
    s = CRITERIA.get("magnitude")(ctx)
    for k, w in masks.prunable(ctx.model).items():
        assert torch.equal(s[k], w.detach().abs())


def test_random_is_seeded_per_seed_and_level():
    a, b = scores_for("random", _ctx(0, 1)), scores_for("random", _ctx(0, 1))
    c = scores_for("random", _ctx(0, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_guidance_weight_zero_reproduces_the_base_mask_exactly():
    ctx = _ctx()
    base = CRITERIA.get("magnitude")(ctx)
    guide = CRITERIA.get("random")(ctx)
    m_base = masks.prune(base, ctx.mask, 0.6, "global")
    m_mix0 = masks.prune(mix(base, guide, 0.0, ctx.mask), ctx.mask, 0.6, "global")
    assert all(torch.equal(m_base[k], m_mix0[k]) for k in m_base)
    m_mix = masks.prune(mix(base, guide, 0.5, ctx.mask), ctx.mask, 0.6, "global")
    assert not all(torch.equal(m_base[k], m_mix[k]) for k in m_base)


def test_normalise_keeps_the_global_ranking():
    s = {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([2.0, 8.0])}
    m = {k: torch.ones(2, dtype=torch.bool) for k in s}
    n = normalise(s, m)
    assert torch.equal(n["b"], torch.tensor([0.25, 1.0]))
    assert torch.argsort(torch.cat(list(n.values()))).tolist() == torch.argsort(torch.cat(list(s.values()))).tolist()


def test_methods_registry_lists_names():
    assert {"imp", "random"} <= set(METHODS.names())
    assert METHODS.get("imp") == Method("magnitude")
