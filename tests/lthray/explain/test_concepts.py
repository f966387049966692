import numpy as np
import pytest
import torch

from lthray.explain import concepts
from lthray.models import build
from lthray.trial import run_trial


def test_vocabularies_ship_with_the_package():
    for ds in ("digits", "cifar10"):
        v = concepts.vocabulary(ds)
        assert len(v) >= 30 and len(set(v)) == len(v) and not any(c.startswith("#") for c in v)
    assert "wheels" in concepts.vocabulary("cifar10") and "a closed loop" in concepts.vocabulary("digits")


def test_random_bank_runs_the_real_open_clip_path_offline_and_is_cached(digits, tmp_path, monkeypatch):
    monkeypatch.setenv("LTHRAY_DATA", str(tmp_path))
    concepts._BANKS.clear()
    bank = concepts.concept_bank(digits, "lthray-tiny-clip", "")
    assert bank.train_sim.shape == (1437, len(concepts.vocabulary("digits")))
    assert bank.name == "lthray-tiny-clip/random"
    assert torch.all(bank.train_sim.abs() <= 1 + 1e-5)
    cached = list((tmp_path / "clip").glob("*.pt"))
    assert len(cached) == 1
    concepts._BANKS.clear()
    again = concepts.concept_bank(digits, "lthray-tiny-clip", "")  # from the disk cache
    assert torch.equal(again.train_sim, bank.train_sim)
    concepts._BANKS.clear()


def test_pretrained_weights_offline_fail_clearly(monkeypatch):
    import open_clip

    def offline(*a, **k):
        raise OSError("We couldn't connect to the Hub (HF_HUB_OFFLINE=1)")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(concepts.ConceptBankUnavailable) as e:
        concepts.load_clip("ViT-B-32", "laion2b_s34b_b79k")
    assert "ViT-B-32/laion2b_s34b_b79k" in str(e.value) and "clip_pretrained=''" in str(e.value)


def test_pcbm_fits_and_recovers_planted_concepts():
    """Features that linearly encode the CLIP similarities: the cos^3 projection must find them."""
    g = torch.Generator().manual_seed(0)
    n, d, k = 600, 16, 6
    sims = torch.rand(n, k, generator=g)
    mix = torch.randn(k, d, generator=g)
    feats = sims @ mix + 0.01 * torch.randn(n, d, generator=g)
    y = sims[:, :3].argmax(1)  # classes decided by concepts 0..2
    p = concepts.fit_pcbm(feats, sims, y, steps=300, C=1.0, l1_ratio=0.5, seed=0)
    acts = p.concepts_of(feats)
    corr = [np.corrcoef(acts[:, j].numpy(), sims[:, j].numpy())[0, 1] for j in range(k)]
    assert min(corr) > 0.9
    acc = float((p.logits(feats).argmax(1) == y).float().mean())
    assert acc > 0.9
    top = p.top_concepts(1)[:, 0]
    assert sorted(top.tolist()) == [0, 1, 2]  # each class's top concept is its own


def test_overlap_and_weight_spearman():
    a = np.array([[0, 1, 2], [3, 4, 5]])
    assert concepts.topk_overlap(a, a) == 1.0
    assert concepts.topk_overlap(a, np.array([[0, 9, 8], [7, 6, 5]])) == pytest.approx(1 / 3)
    w = torch.randn(3, 5)
    assert concepts.weight_spearman(w, w) == pytest.approx(1.0)
    assert concepts.weight_spearman(w, -w) == pytest.approx(-1.0)


def test_every_level_row_has_concept_columns_in_range(tiny_cfg, tmp_path):
    rows = run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r")
    for r in rows:
        assert 0 <= r["pcbm_acc"] <= 1
        assert 0 <= r["concept_topk_overlap"] <= 1
        assert -1 <= r["concept_weight_spearman"] <= 1
        assert len(r["top_concepts"]) == 10 and all(": " in t for t in r["top_concepts"])
        assert r["concept_bank"] == "lthray-tiny-clip/random"
        assert len(r["probe_cams"]) == 4 * 32 * 32
    assert rows[0]["concept_topk_overlap"] == 1.0 and rows[0]["concept_weight_spearman"] == pytest.approx(1.0)
    assert build  # the backbone registry is what PCBM runs on
