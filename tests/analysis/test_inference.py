"""The report's inference against hand computations and simulation: range-respecting intervals, paired tests,
Holm/BH, TOST, the detectable effect, and a synthetic study with a known answer (8 seeds)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import inference, stats


def test_an_unbounded_interval_is_the_t_interval():
    x = np.array([0.90, 0.92, 0.97])
    m, lo, hi, n = inference.interval(x)
    half = st.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)
    assert (m, n) == (pytest.approx(x.mean()), 3)
    assert lo == pytest.approx(x.mean() - half) and hi == pytest.approx(x.mean() + half)
    assert np.isnan(inference.interval([0.5])[1]) and inference.interval([np.nan, 0.4, 0.4])[:3] == (0.4, 0.4, 0.4)


def test_a_bounded_interval_is_the_back_mapped_logit_interval_and_stays_in_range():
    # the audit's case: random pruning's seeds at about 10%, 10% and 45% accuracy
    acc = np.array([0.10, 0.10, 0.45])
    m, lo, hi, _ = inference.interval(acc, (0, 1))
    z = np.log(acc / (1 - acc))
    half = st.t.ppf(0.975, 2) * z.std(ddof=1) / np.sqrt(3)
    assert lo == pytest.approx(1 / (1 + np.exp(-(z.mean() - half))))
    assert hi == pytest.approx(1 / (1 + np.exp(-(z.mean() + half))))
    assert 0 < lo < m < hi < 1
    assert stats.mean_ci(acc)[1] < 0  # the plain t interval leaves [0, 1]: why the transform
    # a correlation uses Fisher's z (the logit of (r + 1) / 2 is 2 atanh r): inside (-1, 1)
    r = np.array([0.97, 0.99, 0.6, 0.95])
    m, lo, hi, _ = inference.interval(r, (-1, 1))
    zr = np.arctanh(r)
    half = st.t.ppf(0.975, 3) * zr.std(ddof=1) / 2
    assert hi == pytest.approx(np.tanh(zr.mean() + half)) and -1 < lo < m < hi < 1


def test_a_paired_comparison_is_the_t_test_tost_and_power_by_hand():
    d = np.array([0.004, -0.002, 0.006, 0.001, 0.003])
    c = inference.paired(d, margin=0.01, span=1)
    assert c.p == pytest.approx(st.ttest_1samp(d, 0).pvalue)
    t_low = (d.mean() + 0.01) / (d.std(ddof=1) / np.sqrt(5))  # H0: mean <= -0.01
    t_high = (d.mean() - 0.01) / (d.std(ddof=1) / np.sqrt(5))  # H0: mean >= +0.01
    assert c.p_tost == pytest.approx(max(st.t.sf(t_low, 4), st.t.cdf(t_high, 4)))
    assert c.p_tost < 0.05  # inside a 1-point margin with 5 seeds
    assert c.p_ni == pytest.approx(st.t.sf(t_low, 4))  # non-inferiority: TOST's lower half alone
    # power at the detectable effect, by the noncentral t (an independent computation): 80%
    crit = st.t.ppf(0.975, 4)
    nc = c.mde_d * np.sqrt(5)
    power = st.nct.sf(crit, 4, nc) + st.nct.cdf(-crit, 4, nc)
    assert power == pytest.approx(0.8, abs=1e-3) and c.mde == pytest.approx(c.mde_d * d.std(ddof=1))
    assert inference.detectable_d(3) > 3  # the audit: 3 seeds detect only effects above ~3.3 SDs
    big = inference.paired(np.array([-0.9, -0.95, -0.3]), margin=0.01, span=1.0)
    assert big.lo == -1.0 and big.clipped  # an accuracy difference cannot fall below -1


def test_holm_and_bh_match_hand_computations():
    p = np.array([0.01, 0.04, 0.03, 0.20])
    assert inference.adjust(p).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.20])
    assert inference.adjust(p, "fdr_bh").tolist() == pytest.approx([0.04, 0.0533333, 0.0533333, 0.20])


def test_verdicts_need_the_corrected_test():
    assert inference.verdict(0.3, 0.01, 0.9) == "higher" and inference.verdict(-0.3, 0.01, 0.9) == "lower"
    assert inference.verdict(0.001, 0.8, 0.01) == "equivalent"
    assert inference.verdict(0.001, 0.8, 0.2) == "inconclusive" and inference.verdict(0.1, math.nan, 0.1) == "no CI"


def test_a_collapse_in_some_seeds_is_flagged():
    assert inference.collapsed(np.array([0.10, 0.10, 0.45]), 0.1)
    assert not inference.collapsed(np.array([0.10, 0.11, 0.12]), 0.1)  # all at chance: agreed
    assert not inference.collapsed(np.array([0.85, 0.88, 0.80]), 0.1)


SEEDS = 8
DENSITIES = [1.0, 0.4, 0.16, 0.064, 0.0256]


def _study(rng, effect=0.03, noise=0.003):
    """IMP, 'movement_guided' = IMP + noise (the null), 'cam_guided' = IMP + a clear `effect`; 8 seeds whose
    levels differ a lot between seeds (what pairing removes)."""
    rows = []
    for seed in range(SEEDS):
        base = 0.85 + rng.normal(0, 0.03)
        for method, shift in (("imp", 0.0), ("movement_guided", 0.0), ("cam_guided", effect)):
            for level, dens in enumerate(DENSITIES):
                acc = base - 0.05 * level + (0 if level == 0 else shift + rng.normal(0, noise))
                if method == "imp":
                    acc = base - 0.05 * level
                cfg = {"prune.method": method, "seed": seed, "prune.guidance_weight": 0.5 * (method != "imp")}
                rows.append({"run_id": f"{method}{seed}", "method": method, "seed": seed, "level": level,
                             "density": dens, "status": "ok", "guidance_weight": cfg["prune.guidance_weight"],
                             "lambda_fid": 0.0, "config_json": json.dumps(cfg), "dataset": "fashion_mnist",
                             "rewind": "weight", "rewind_spec": "0it", "rewind_step": 0, "test_acc": acc,
                             **{m: np.nan for m in stats.METRICS if m != "test_acc"}})
    return pd.DataFrame(rows)


def test_a_synthetic_study_finds_the_effect_everywhere_and_claims_equivalence_only_inside_the_margin():
    rows = _study(np.random.default_rng(0))
    d = stats.paired_differences(rows).set_index(["family", "level"])
    real, null = d.loc["cam_guided (g=0.5)"], d.loc["movement_guided (g=0.5)"]
    assert (real["test_acc_verdict"] == "higher").all() and len(real) == 4  # the real effect at every density
    assert set(null["test_acc_verdict"]) <= {"equivalent", "inconclusive"}
    assert (null["test_acc_verdict"] == "equivalent").all()  # noise 0.3 points, margin 1 point, 8 seeds
    assert (null["d_test_acc_lo"] > -0.01).all() and (null["d_test_acc_hi"] < 0.01).all()  # margin holds
    assert not (real["test_acc_verdict"] == "equivalent").any()  # 3 points is outside a 1-point margin
    assert (real["test_acc_family_size"] == 8).all()  # one family: 2 methods x 4 densities
    tight = stats.paired_differences(rows, margins={"test_acc": 0.0005}).set_index(["family", "level"])
    assert not (tight.loc["movement_guided (g=0.5)", "test_acc_verdict"] == "equivalent").any()
    summary = stats.level_summary(rows)
    assert ((summary["test_acc_lo"] >= 0) & (summary["test_acc_hi"] <= 1)).all()
    assert ((summary["test_acc_lo"] <= summary["test_acc"]) & (summary["test_acc"] <= summary["test_acc_hi"])).all()
    words = stats.sentence(real.reset_index().assign(family="cam_guided (g=0.5)").iloc[0])
    assert "accuracy 3.1 points higher than IMP" in words and "Holm p < 0.001" in words
    assert "Grad-CAM Spearman to dense not measured" in words


def test_the_null_is_found_no_more_often_than_holm_allows():
    """200 synthetic studies in which two methods equal IMP plus noise: the share with any false detection
    in the accuracy family (2 methods x 4 densities, 8 seeds) stays at Holm's 5%."""
    rng = np.random.default_rng(1)
    false = 0
    reps = 200
    for _ in range(reps):
        diffs = pd.DataFrame({"family": [f"m{i}" for i in range(8)], "level": list(range(8)),
                              "pairs_x": [list(rng.normal(0, 0.01, SEEDS)) for _ in range(8)]})
        t = inference.family_table(diffs, "x", margin=0.01, span=1.0)
        false += bool(t["verdict"].isin(["higher", "lower"]).any())
    assert false / reps <= 0.05 + 2 * math.sqrt(0.05 * 0.95 / reps)  # within sampling error of alpha
    # and without the correction the same data would detect something far more often
    raw = 0
    rng = np.random.default_rng(1)
    for _ in range(reps):
        p = [st.ttest_1samp(rng.normal(0, 0.01, SEEDS), 0).pvalue for _ in range(8)]
        raw += min(p) < 0.05
    assert raw / reps > 0.2


def test_non_inferiority_is_one_sided_and_holm_adjusted_over_the_family():
    """'Keeps the reference's accuracy' = above -margin: a level clearly *above* dense passes it (TOST's
    two-sided equivalence does not); a level clearly 2 points below fails it; Holm adjusts its p-values."""
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.002, 5)
    diffs = pd.DataFrame({"family": ["above", "same", "below"], "level": [1, 1, 1],
                          "pairs_x": [list(0.02 + noise), list(noise), list(-0.02 + noise)]})
    t = inference.family_table(diffs, "x", margin=0.01, span=1).set_index("family")
    assert t.loc["above", "p_ni_holm"] < 0.05 and t.loc["above", "p_tost_holm"] > 0.05
    assert t.loc["same", "p_ni_holm"] < 0.05 and t.loc["below", "p_ni_holm"] > 0.5
    np.testing.assert_allclose(t["p_ni_holm"], inference.adjust(t["p_ni"]))
