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
    dense = rows[0]  # level 0 is measured as any level is: the dense backbone's refits against its own PCBM
    assert dense["concept_topk_overlap"] == dense["concept_refit_overlap"]
    assert dense["concept_random_overlap"] is not None and dense["concepts_kept"] > tiny_cfg.concepts.topk
    assert all(r["concept_random_overlap"] is None and r["concepts_kept"] == dense["concepts_kept"] for r in rows[1:])
    assert build  # the backbone registry is what PCBM runs on


def test_the_fidelity_cutoff_keeps_the_concepts_the_features_predict():
    """Half the concepts are linear in the features, half are noise: the cutoff keeps exactly the first half."""
    g = torch.Generator().manual_seed(1)
    n, d = 1000, 16
    feats = torch.randn(n, d, generator=g)
    planted = feats[:, :4] @ torch.randn(4, 6, generator=g)
    sim = torch.cat([planted, torch.randn(n, 6, generator=g)], 1)
    p = concepts.fit_projection(feats, sim, steps=300, seed=0, cutoff=0.45)
    assert p.kept.tolist() == [0, 1, 2, 3, 4, 5]
    assert p.fidelity[:6].min() > 0.9 and p.fidelity[6:].max() < 0.3  # held-out: noise is not predicted
    assert concepts.fit_projection(feats, sim, steps=300, seed=0, cutoff=-1).kept.tolist() == list(range(12))


def _attribute_bank(y: torch.Tensor, n_concepts: int = 16) -> torch.Tensor:
    """Attribute-like concept scores (CUB-style): each concept is present in a random subset of the classes,
    scored with noise, as a concept bank of a real source would score images."""
    g = torch.Generator().manual_seed(3)
    present = (torch.rand(10, n_concepts, generator=g) < 0.4).float()
    return present[y] + 0.3 * torch.randn(len(y), n_concepts, generator=g)


def test_an_untrained_backbone_is_detected_by_the_concept_measure(digits):
    """The measure's range on a fixture: refitting a trained backbone's concept layer keeps its top
    concepts; the same network untrained, through the trained one's projection, does not."""
    from lthray.config import TrainConfig
    from lthray.train import train

    model = build("convnet", 10, 0, digits.spec.channels)
    untrained = concepts.features(model, digits.train_x)
    train(model, digits, TrainConfig(epochs=4, batch_size=64), mask=None, start=0, end=4 * 23, seed=0)
    trained = concepts.features(model, digits.train_x)
    y, sim = digits.train_y, _attribute_bank(digits.train_y)
    ref = concepts.fit_pcbm(trained, sim, y, steps=200, C=0.5, l1_ratio=0.5, seed=0, cutoff=0.45)
    assert ref is not None and len(ref.kept) > 3
    kw = dict(y=y, ref=ref, refits=5, k=3, C=0.5, l1_ratio=0.5, seed=10)
    refit, refit_rho = concepts.refit_agreement(trained, **kw)
    random, random_rho = concepts.refit_agreement(untrained, **kw)
    assert refit > 0.8 and refit_rho > 0.8
    assert random < refit - 0.3 and random_rho < refit_rho - 0.3


def test_a_vocabulary_of_your_own_is_read_from_its_path(tmp_path, digits, monkeypatch):
    from lthray.config import ConceptConfig
    from lthray.explain import concept_sources as cs

    monkeypatch.setenv("LTHRAY_DATA", str(tmp_path))
    vocab = tmp_path / "mine.txt"
    vocab.write_text("# my concepts\na round shape\n\na straight line\na crossing\n")
    assert concepts.vocabulary("digits", str(vocab)) == ["a round shape", "a straight line", "a crossing"]
    cs._BANKS.clear()
    bank = cs.bank_for(digits, ConceptConfig(source="clip", vocabulary=str(vocab), bank_size=50))
    shipped = cs.bank_for(digits, ConceptConfig(source="clip", bank_size=50))
    assert bank.concepts == ["a round shape", "a straight line", "a crossing"] and bank.train_sim.shape == (50, 3)
    assert len(shipped.concepts) > 3 and len(list((tmp_path / "concepts").glob("*.pt"))) == 2  # one cache each
    (tmp_path / "in.txt").write_text("417 balloon\nnot-a-number thing\n")
    with pytest.raises(concepts.ConceptBankUnavailable, match="'not-a-number thing' is not 'INDEX name'"):
        cs.imagenet_vocabulary("fashion_mnist", str(tmp_path / "in.txt"))
    cs._BANKS.clear()
