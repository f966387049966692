"""Noise floors against hand computations, the paper's claims on synthetic rows with a known answer, the
median-seed gallery, one colour per method, and the report's --margin flag."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from analysis import claims, colors, floors, gallery, pareto, report, stats

N, HW = 4, 9  # probe images, pixels per map


def _rows(make_row, seeds=5, methods=("imp", "cam_guided")):
    """Dense maps that differ by seed, a pruned level whose accuracy falls 10 points, whose maps concentrate
    and drift far beyond the seed floor, and whose concepts change beyond the refit floor."""
    rng = np.random.default_rng(0)
    shared = rng.random((N, HW))
    rows = []
    for seed in range(seeds):
        dense_maps = shared + 0.2 * rng.random((N, HW))  # seeds agree, not perfectly
        for method in methods:
            g = 0.5 * (method != "imp")
            cfg = json.dumps({"prune.method": method, "seed": seed, "data.probe_size": N, "explain.topk": 0.3,
                              "prune.guidance_weight": g})
            for level in (0, 1):
                top = [f"{c}: a | b | c" if level == 0 else f"{c}: a | x | y" for c in range(3)]
                rows.append(make_row(
                    run_id=f"{method}{seed}", method=method, seed=seed, level=level, density=0.4 ** level,
                    guidance_weight=g, config_json=cfg,
                    test_acc=0.9 - 0.1 * level + rng.normal(0, 0.005),
                    cam_spearman=1.0 if level == 0 else 0.3 + rng.normal(0, 0.02),
                    cam_concentration=0.4 - 0.15 * level + rng.normal(0, 0.01),
                    concept_topk_overlap=1.0 if level == 0 else 1 / 3 + rng.normal(0, 0.01),
                    top_concepts=top,
                    reference_cams=dense_maps.ravel().tolist() if level == 0 else None,
                    concept_refit_overlap=0.9 + rng.normal(0, 0.01) if level == 0 else None,
                    concept_refit_spearman=0.8 if level == 0 else None))
    return pd.DataFrame(rows)


def test_the_seed_floor_is_the_mean_agreement_of_dense_models_over_seed_pairs(make_row):
    rows = _rows(make_row, seeds=3)
    fl = floors.floors(rows).set_index(["metric", "kind"])
    dense = floors.dense_models(rows)
    assert len(dense) == 3  # one dense model per seed, however many methods share it
    maps = [np.asarray(r, dtype=float).reshape(N, HW) for r in dense["reference_cams"]]
    by_hand = [np.mean([st.spearmanr(a[i], b[i]).statistic for i in range(N)])
               for a, b in [(maps[0], maps[1]), (maps[0], maps[2]), (maps[1], maps[2])]]
    assert fl.loc[("cam_spearman", "seed"), "floor"] == pytest.approx(np.mean(by_hand))
    assert fl.loc[("cam_spearman", "seed"), "lo"] == pytest.approx(min(by_hand)) and fl.loc[("cam_spearman", "seed"),
                                                                                             "n"] == 3
    assert fl.loc[("concept_topk_overlap", "seed"), "floor"] == 1.0  # every dense PCBM picks a, b, c
    assert fl.loc[("concept_topk_overlap", "refit"), "floor"] == pytest.approx(
        dense["concept_refit_overlap"].mean())
    assert ("lrp_spearman", "seed") not in fl.index  # no LRP maps in these rows: no floor, none invented


def test_a_drift_is_read_against_its_floor():
    f = pd.Series({"floor": 0.7, "lo": 0.6, "hi": 0.8, "kind": "seed"})
    assert floors.against(0.3, 0.25, 0.35, f).startswith("beyond the seed-to-seed floor 0.70")
    assert floors.against(0.9, 0.85, 0.95, f).startswith("within")
    assert floors.against(0.65, 0.55, 0.75, f).startswith("at the edge")
    assert floors.against(0.5, 0.4, 0.6, None) == "no floor measured"


def test_each_claim_is_tested_and_holds_where_the_data_says_so(make_row):
    rows = _rows(make_row)
    fl = floors.floors(rows)
    t = claims.all_claims(rows, fl)
    assert set(t) == {"accuracy falls", "cam smaller", "cam different", "concepts different"}
    for name in t:
        assert (t[name]["verdict"] == "lower").all(), name  # every method, every pruned level
        assert t[name]["n"].eq(5).all()
    acc = t["accuracy falls"].set_index("family")
    assert acc.loc["imp", "mean"] == pytest.approx(-0.1, abs=0.01)
    words = claims.sentences("accuracy falls", t["accuracy falls"])
    assert words[0].startswith("Accuracy falls with pruning") and "holds at 2 of them" in words[0]
    # the same rows where the pruned model keeps its accuracy: no change is shown by TOST, not by a failed test
    flat = rows.assign(test_acc=np.where(rows["level"] == 1, rows["test_acc"] + 0.1, rows["test_acc"]))
    kept = claims.all_claims(flat, fl)["accuracy falls"]
    assert set(kept["verdict"]) <= {"equivalent", "inconclusive"} and "lower" not in set(kept["verdict"])


def test_a_claim_over_several_designs_names_each_design(make_row):
    rows = _rows(make_row, methods=("imp",))
    other = rows.assign(run_id=rows["run_id"] + "k", test_acc=rows["test_acc"] + 0.1 * rows["level"],
                        config_json=[c[:-1] + ', "prune.rewind_step": "5it"}' for c in rows["config_json"]])
    words = claims.sentences("accuracy falls", claims.all_claims(pd.concat([rows, other]), floors.floors(rows))[
        "accuracy falls"])
    assert any(w.startswith("imp [prune.rewind_step=5it]: ") and "lower" not in w for w in words)
    assert any(w.startswith("imp [prune.rewind_step=None]: lower at 40%") for w in words)
    assert "of 2 methods and designs" in words[0]


def test_imps_kept_accuracy_is_said_only_as_far_as_its_tests_go(make_row):
    """The headline 'IMP keeps dense accuracy' is a non-inferiority result, never a point estimate."""
    rows = _rows(make_row, seeds=8)
    fl = floors.floors(rows)
    design = stats.with_design(rows)["design"].iloc[0]
    lost = claims.all_claims(rows, fl)["accuracy falls"]
    said = claims.knee_sentence(lost, design, 0.01)
    assert "is shown at no pruned level with 8 seeds" in said and "detectably lower (Holm) from 40%" in said
    dense = rows[rows["level"] == 0].set_index("run_id")["test_acc"]
    wobble = np.random.default_rng(1).normal(0, 0.002, len(rows))  # pruned = its dense model, give or take
    flat = rows.assign(test_acc=np.where(rows["level"] == 1, rows["run_id"].map(dense) + wobble, rows["test_acc"]))
    kept = claims.all_claims(flat, fl)["accuracy falls"]
    assert claims.knee_sentence(kept, design, 0.01).startswith(
        "IMP keeps its dense model's accuracy down to 40% density (non-inferior at a 1 point margin: one-sided "
        "paired t-test, Holm)")
    # a 0.05-point margin is narrower than the seeds' noise allows: no equivalence, only the point estimate
    tight = claims.all_claims(flat, fl, {"test_acc": 0.0005})["accuracy falls"]
    assert "(a point estimate, not a test)" in claims.knee_sentence(tight, design, 0.0005)
    # one seed: nothing is tested, so "no level is detectably lower" is not said either
    one = claims.all_claims(rows[rows["seed"] == 0], floors.floors(rows))["accuracy falls"]
    assert claims.knee_sentence(one, design, 0.01) == "IMP's accuracy: one seed, so no test"


def test_the_gallery_seed_is_the_median_seed_for_every_method(make_row):
    rows = _rows(make_row)
    final = rows[rows["level"] == 1]
    order = final.groupby("seed")["test_acc"].mean().sort_values()
    seed, why = gallery.median_seed(rows)
    assert seed == int(order.index[2]) and "median" in why
    reps = gallery.representatives(rows)
    assert set(reps["seed"]) == {seed} and set(reps["method"]) == {"imp", "cam_guided"}


def test_a_method_has_one_colour_in_every_chart_from_the_registry():
    from lthray.methods import METHODS

    one = colors.encoding(pd.Series(["imp", "random"])).to_dict()["scale"]
    two = colors.encoding(pd.Series(["cam_guided (g=0.5)", "imp", "lrp_guided (g=0.5)"])).to_dict()["scale"]
    assert one["domain"] == ["imp", "random"]  # only what the chart draws: no ghost entries
    assert dict(zip(one["domain"], one["range"], strict=True))["imp"] == METHODS.get("imp").color
    assert dict(zip(two["domain"], two["range"], strict=True))["imp"] == METHODS.get("imp").color
    assert len({METHODS.get(m).color for m in METHODS}) == len(list(METHODS))  # no two methods share one
    assert colors.method_color("not_a_method") == colors.method_color("not_a_method")  # stable fallback


def _color_scales(spec) -> list[dict]:
    """Every colour scale (domain, range) in a Vega-Lite spec."""
    out = []
    if isinstance(spec, dict):
        enc = spec.get("encoding", {}).get("color", {})
        if "scale" in enc:
            out.append(enc["scale"])
        for v in spec.values():
            out += _color_scales(v)
    elif isinstance(spec, list):
        for v in spec:
            out += _color_scales(v)
    return out


def test_panels_side_by_side_share_one_colour_domain_when_one_leaves_a_method_out(make_row):
    """Vega-Lite unites the domains of concatenated panels but keeps one panel's range: a panel that leaves a
    method out (off scale, not measured) must not shift the others' colours (random drawn in reinit's)."""
    rows = _rows(make_row, methods=("imp", "random", "reinit", "snip"))
    rows.loc[rows["method"] == "random", "test_acc"] -= 0.5  # off the zoomed accuracy panel
    diffs = stats.paired_differences(rows)
    panels = [("test_acc", "acc", 100.0, 10.0), ("cam_spearman", "cam", 1.0, 0.4)]
    scales = _color_scales(report.diff_panels(diffs, panels).to_dict())
    assert len(scales) >= 2 and all(sc == scales[0] for sc in scales)
    painted = {colors.method_of(f): c for f, c in zip(scales[0]["domain"], scales[0]["range"], strict=True)}
    assert painted == {m: colors.method_color(m) for m in ("random", "reinit", "snip")}
    # a series off scale in every panel is named in the subtitles, never a legend entry without a mark
    rows.loc[rows["method"] == "random", "cam_spearman"] -= 0.6
    scales = _color_scales(report.diff_panels(stats.paired_differences(rows), panels).to_dict())
    assert {colors.method_of(f) for f in scales[0]["domain"]} == {"reinit", "snip"}
    summary = stats.level_summary(rows)
    zoomed = report.lth_curves(summary).to_dict()
    assert all(sc == _color_scales(zoomed)[0] for sc in _color_scales(zoomed))


def test_the_report_carries_floors_claims_per_seed_tables_and_declared_margins(make_row, tmp_path):
    rows = _rows(make_row)
    rows["probe_cams"] = None
    rows.loc[(rows["method"] == "cam_guided") & (rows["level"] == 1), "empty_layers"] = pd.Series(
        [["body.5.0.weight"]] * 5, index=rows.index[(rows["method"] == "cam_guided") & (rows["level"] == 1)])
    report.build(rows, tmp_path, margins={"test_acc": 0.02})
    md = (tmp_path / "report.md").read_text()
    assert "The paper's claims, tested" in md and "Accuracy falls with pruning" in md
    assert "seed-to-seed floor" in md and "refit" in md
    assert "test accuracy ±2 points" in md  # the declared margin, as given
    assert "cam_guided (g=0.5) at 40% density (level 1), seeds [0, 1, 2, 3, 4]: no weight kept in body.5.0.weight" \
        in md
    per_seed = pd.read_csv(tmp_path / "per_seed.csv")
    assert len(per_seed) == len(rows) and {"test_acc", "cam_spearman", "seed", "level"} <= set(per_seed.columns)
    # every interval in summary.csv can be recomputed from per_seed.csv
    summary = pd.read_csv(tmp_path / "summary.csv")
    one = summary[(summary["family"] == "imp") & (summary["level"] == 1)].iloc[0]
    again = stats.mean_ci(per_seed[(per_seed["family"] == "imp") & (per_seed["level"] == 1)]["test_acc"],
                          metric="test_acc")
    assert (one["test_acc_lo"], one["test_acc_hi"]) == pytest.approx(again[1:3], rel=1e-4)
    assert (tmp_path / "noise_floors.csv").exists()
    tested = pd.read_csv(tmp_path / "claims.csv")
    assert {"claim", "p_holm", "p_tost_holm", "p_ni_holm"} <= set(tested.columns)
    assert "accuracy falls" in set(tested["claim"])
    # the report names exactly the tables it wrote beside itself
    named = set(re.findall(r"`([a-z_]+\.csv)`", md.split("## (a)")[0]))
    assert named and all((tmp_path / t).exists() for t in named)
    imp_only = rows[rows["method"] == "imp"]
    report.build(imp_only, tmp_path / "imp")
    assert "paired_differences.csv" not in (tmp_path / "imp" / "report.md").read_text().split("## (a)")[0]


def test_a_bad_margin_is_refused_in_one_line(tmp_path, capsys):
    for bad in ("test_acc", "nope=0.1", "test_acc=abc", "test_acc=-1"):
        assert pareto.main(["--report-only", "--margin", bad, "--results", str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: --margin")


def test_the_report_builds_when_a_metric_was_never_measured(make_row, tmp_path):
    """Concepts disabled: every concept column null; its difference panel says so instead of failing."""
    rows = _rows(make_row, seeds=2)
    for c in ("concept_topk_overlap", "concept_weight_spearman", "pcbm_acc", "top_concepts", "concept_refit_overlap",
              "concept_refit_spearman"):
        rows[c] = None
    rows["probe_cams"] = None
    report.build(rows, tmp_path)
    assert (tmp_path / "paired_differences.png").read_bytes()[:4] == b"\x89PNG"
    assert "Concepts were disabled in this sweep" in (tmp_path / "report.md").read_text()


def test_numbers_in_claim_sentences_read_plainly():
    # -99.6 points is "-100", not "-1e+02"; float round-off at 0 is "+0", not "+3.7e-17"
    assert [claims._signed(x) for x in (-99.6, -100.2, 3.7e-17, -0.0123, 2.5)] == ["-100", "-100", "+0", "-0.012",
                                                                                  "+2.5"]


def test_a_level_above_dense_keeps_accuracy_in_the_knee_sentence():
    """Higher at 40% and 16%, within the margin at 6.4%, lower after: all three kept levels pass
    non-inferiority (the reference report once said the equivalence test 'passes at no pruned level'
    beside a level detectably above dense)."""
    acc = pd.DataFrame({"design": "d", "family": "imp", "level": [1, 2, 3, 4],
                        "density": [0.4, 0.16, 0.064, 0.0256], "mean": [0.005, 0.005, -0.001, -0.02],
                        "verdict": ["higher", "higher", "equivalent", "lower"], "n": 5,
                        "p_ni_holm": [0.001, 0.001, 0.02, 0.9]})
    said = claims.knee_sentence(acc, "d", 0.01)
    assert said.startswith("IMP keeps its dense model's accuracy down to 6.4% density (non-inferior")
    assert "detectably lower (Holm) from 2.6%" in said
    # a failed test at 16% stops the run there, whatever the later levels say
    gap = acc.assign(p_ni_holm=[0.001, 0.2, 0.02, 0.9])
    assert claims.knee_sentence(gap, "d", 0.01).startswith("IMP keeps its dense model's accuracy down to 40% density")


def _same_init_rows(make_row, drift: float, seeds: int = 6):
    """Per seed: a same-initialisation floor of Grad-CAM agreement that varies by seed (0.6-0.8), and a
    pruned level whose agreement is the seed's floor minus `drift`, give or take noise."""
    rng = np.random.default_rng(3)
    rows = []
    for seed in range(seeds):
        floor = 0.6 + 0.2 * rng.random()
        cfg = json.dumps({"prune.method": "imp", "seed": seed})
        for level in (0, 1):
            rows.append(make_row(run_id=f"imp{seed}", seed=seed, level=level, density=0.4 ** level, config_json=cfg,
                                 cam_spearman=1.0 if level == 0 else floor - drift + rng.normal(0, 0.01),
                                 floor_cam_spearman=floor if level == 0 else None))
    return pd.DataFrame(rows)


def test_drift_is_tested_paired_by_seed_against_the_same_initialisation_floor(make_row):
    """A known drift of 0.1 below each seed's own floor is found (Holm); no drift is called no change
    (TOST at 0.05), although the floors spread over 0.2 - a constant floor would blur both."""
    drifted = claims.all_claims(_same_init_rows(make_row, 0.1), pd.DataFrame())["cam drifts"]
    assert list(drifted["verdict"]) == ["lower"] and drifted["mean"].iloc[0] == pytest.approx(-0.1, abs=0.02)
    null = claims.all_claims(_same_init_rows(make_row, 0.0), pd.DataFrame())["cam drifts"]
    assert list(null["verdict"]) == ["equivalent"]
    fl = floors.floors(_same_init_rows(make_row, 0.0)).set_index(["metric", "kind"])
    rows0 = _same_init_rows(make_row, 0.0)
    assert fl.loc[("cam_spearman", "same_init"), "floor"] == pytest.approx(rows0["floor_cam_spearman"].mean())
    assert fl.loc[("cam_spearman", "same_init"), "n"] == 6


def _with_range(rows: pd.DataFrame, bottom: float, rng: np.random.Generator) -> pd.DataFrame:
    """Level-0 rows given the concept measure's range: top 0.9 (their refit floor), bottom `bottom`."""
    dense = rows["level"] == 0
    rows = rows.assign(concepts_kept=np.where(dense, 20, 20))
    rows["concept_random_overlap"] = [bottom + rng.normal(0, 0.02) if d else None for d in dense]
    return rows


def test_the_concept_range_separates_or_no_concept_claim_is_made(make_row, tmp_path):
    rng = np.random.default_rng(1)
    rows = _with_range(_rows(make_row), 0.3, rng)
    r = floors.concept_range(rows).iloc[0]
    dense = floors.dense_models(rows)
    assert r["top"] == pytest.approx(dense["concept_refit_overlap"].mean())
    assert r["bottom"] == pytest.approx(dense["concept_random_overlap"].mean()) and r["chance"] == pytest.approx(5 / 20)
    assert r["separates"] and r["p"] < 1e-4
    assert "concepts different" in claims.all_claims(rows, floors.floors(rows))
    blind = _with_range(_rows(make_row), 0.9, rng)  # the untrained backbone scores like a refit: no range
    r = floors.concept_range(blind).iloc[0]
    assert not r["separates"] and r["p"] > 0.05
    tables = claims.all_claims(blind, floors.floors(blind))
    assert "concepts different" not in tables and "accuracy falls" in tables
    blind["probe_cams"] = None
    report.build(blind, tmp_path)
    assert "The instrument cannot separate an untrained backbone from a refitted one with 5 seeds" in \
        (tmp_path / "report.md").read_text()


def test_the_cascade_says_where_each_method_stops_depending_on_the_weights(make_row, tmp_path):
    from analysis.report import training

    rows = _rows(make_row)
    layers = ["fc", "conv3", "conv2", "conv1"]
    dense = rows["level"] == 0
    rows["cascade_layers"] = [layers if d else None for d in dense]
    rows["cam_cascade_spearman"] = [[0.2, 0.1, 0.05, 0.0] if d else None for d in dense]
    rows["lrp_cascade_spearman"] = [[0.95, 0.9, 0.3, 0.1] if d else None for d in dense]
    rows["cam_sanity_spearman"] = [0.1 if d else None for d in dense]
    t = training.cascade_table(rows)
    assert len(t) == 8 and set(t["dense models"]) == {5}  # one dense model per seed, not per method
    said = training.cascade_sentences(t, 0.5)
    assert said[0].startswith("Grad-CAM: below 0.5 once `fc` is randomised (step 1 of 4")
    assert said[1].startswith("LRP: below 0.5 once `conv2` is randomised (step 3 of 4") and "`fc`, `conv3`" in said[1]
    q = [0.0, 0.01, 0.02, 0.05, 0.1]
    rows["weight_move_quantiles"] = [q] * len(rows)
    rows["weights_still"] = 0.2
    rows["first_filters"], rows["first_filters_shape"] = [[0.1] * 18] * len(rows), [[2, 1, 3, 3]] * len(rows)
    rows["probe_cams"] = None
    report.build(rows, tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "cascade.png" in md and "(i) Weights over training" in md and "first_filters.png" in md
    mv = pd.read_csv(tmp_path / "weight_movement.csv")
    assert set(mv["q50"]) == {0.02} and (tmp_path / "first_filters.png").read_bytes()[:4] == b"\x89PNG"
