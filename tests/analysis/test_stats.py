"""Study statistics: t intervals over seeds, differences paired by (design, seed, level), generated words."""

import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import report, stats


def test_mean_ci_is_the_t_interval_over_seeds_and_stays_inside_a_metrics_range():
    x = np.array([0.90, 0.92, 0.97])
    m, lo, hi, n = stats.mean_ci(x)
    half = st.t.ppf(0.975, 2) * x.std(ddof=1) / np.sqrt(3)  # by hand
    assert (m, n) == (pytest.approx(x.mean()), 3)
    assert lo == pytest.approx(x.mean() - half) and hi == pytest.approx(x.mean() + half)
    assert np.isnan(stats.mean_ci([0.5])[1])  # one seed: no interval
    assert stats.mean_ci([np.nan, 0.4, 0.4])[:3] == (0.4, 0.4, 0.4)
    m, lo, hi, _ = stats.mean_ci([0.1, 0.1, 0.45], metric="test_acc")  # the audit's random at 1% density
    assert 0 < lo < m < hi < 1


def _rows(make_row, method, g, accs_by_seed, cams_by_seed, design_extra=None):
    out = []
    for seed, (accs, cams) in enumerate(zip(accs_by_seed, cams_by_seed, strict=True)):
        cfg = {"prune.method": method, "prune.guidance_weight": g, "seed": seed, "prune.rate": 0.5,
               **(design_extra or {})}
        rid = f"{method}{g}{seed}{json.dumps(design_extra)}"
        for level, (a, c) in enumerate(zip(accs, cams, strict=True)):
            out.append(make_row(run_id=rid, method=method, guidance_weight=g, seed=seed, level=level,
                                density=0.5**level, test_acc=a, cam_spearman=c, config_json=json.dumps(cfg)))
    return out


def test_differences_pair_by_seed_and_level_and_say_when_they_are_not_detectable(make_row):
    imp_acc = [[0.9, 0.8], [0.7, 0.6], [0.5, 0.4]]  # seeds differ a lot...
    cam = [[1.0, 0.5], [1.0, 0.6], [1.0, 0.7]]
    rows = _rows(make_row, "imp", 0.0, imp_acc, cam)
    # ...and the guided method is exactly 0.02 better in every seed: paired, that is certain
    rows += _rows(make_row, "cam_guided", 0.5, [[a + 0.02 for a in s] for s in imp_acc],
                  [[1.0, c[1] + d] for c, d in zip(cam, (0.1, -0.1, 0.05), strict=True)])
    # a different design (another pruning rate) must never be paired with the IMP rows above
    rows += _rows(make_row, "random", 0.0, imp_acc, cam, {"prune.rate": 0.9})
    d = stats.paired_differences(pd.DataFrame(rows))
    assert set(d["family"]) == {"cam_guided (g=0.5)"} and d["level"].tolist() == [1]
    rec = d.iloc[0]
    assert rec["pairs"] == 3 and rec["d_test_acc"] == pytest.approx(0.02)
    assert rec["test_acc_verdict"] == "higher" and rec["test_acc_p"] == 0.0  # every pair +0.02 exactly
    assert rec["cam_spearman_verdict"] == "inconclusive"
    assert rec["cam_spearman_mde"] > abs(rec["d_cam_spearman"])
    words = stats.sentence(rec)
    assert words.startswith("At 50% density (level 1), cam_guided (g=0.5)")
    assert "Grad-CAM Spearman to dense inconclusive with 3 seeds" in words and "80% power needs" in words
    assert "accuracy 2 points higher than IMP" in words


def test_the_report_is_self_contained_light_and_answers_each_question(make_row, tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for method, g in [("imp", 0.0), ("random", 0.0), ("cam_guided", 0.5)]:
        accs = [[0.9 - 0.1 * lv * (method == "random") + rng.normal(0, 0.01) for lv in range(4)] for _ in range(3)]
        cams = [[1.0 - 0.1 * lv + rng.normal(0, 0.02) for lv in range(4)] for _ in range(3)]
        rows += _rows(make_row, method, g, accs, cams)
    df = pd.DataFrame(rows)
    df["probe_cams"] = None  # no gallery data: the rest of the report still builds
    path = report.build(df, tmp_path)
    page = path.read_text()
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org", "")  # offline
    assert page.count("<svg") >= 5 and len(page) < 2_000_000
    md = (tmp_path / "report.md").read_text()
    for section in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)"):
        assert f"## {section}" in md
    assert "RANDOM concept bank" in md.splitlines()[0]  # make_row's bank is the random tiny CLIP
    assert "random vs IMP over 3 matched levels (Holm within each metric's family): accuracy lower at 3" in md
    assert (tmp_path / "per_seed.csv").exists() and "Holm" in md
    for png in ("lth_curve", "cam_curves", "concept_curves", "paired_differences", "pareto_bands"):
        assert (tmp_path / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
