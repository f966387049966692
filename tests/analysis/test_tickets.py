"""Ticket overlap and per-layer density against counts made by hand; the report's (g) and (h) sections."""

import json

import numpy as np
import pandas as pd
import pytest

from analysis import instability, report, tickets


def test_jaccard_and_its_chance_level():
    a = np.array([1, 1, 0, 0, 1], bool)
    b = np.array([1, 0, 1, 0, 1], bool)
    assert tickets.jaccard(a, b) == pytest.approx(2 / 4)
    assert tickets.jaccard(a, a) == 1.0 and tickets.jaccard(a, ~a) == 0.0
    rng = np.random.default_rng(0)  # the chance formula against simulation
    x, y = rng.random(200_000) < 0.1, rng.random(200_000) < 0.1
    assert tickets.jaccard(x, y) == pytest.approx(tickets.chance(0.1), abs=0.003)


def _masks_and_rows(make_row):
    """imp: seeds 0, 1 keep the same first half of each layer; random: seed 0 keeps the second half,
    seed 1 the even indices. Layers 'c' (12 weights) and 'f' (4)."""
    half = {"c": np.arange(12) < 6, "f": np.arange(4) < 2}
    masks = {("imp0", 1): half, ("imp1", 1): half,
             ("rnd0", 1): {k: ~v for k, v in half.items()},
             ("rnd1", 1): {"c": np.arange(12) % 2 == 0, "f": np.arange(4) % 2 == 0}}
    rows = []
    for rid, method, seed in [("imp0", "imp", 0), ("imp1", "imp", 1), ("rnd0", "random", 0), ("rnd1", "random", 1)]:
        cfg = json.dumps({"prune.method": method, "seed": seed})
        for level in (0, 1):
            rows.append(make_row(run_id=rid, method=method, seed=seed, level=level, density=0.5 ** level,
                                 config_json=cfg))
    return masks, pd.DataFrame(rows)


def test_overlap_between_seeds_and_between_methods(make_row):
    masks, rows = _masks_and_rows(make_row)
    ov = tickets.overlap(rows, masks).set_index(["a", "b"])
    assert ov.loc[("imp", "imp"), "jaccard"] == 1.0 and ov.loc[("imp", "imp"), "pairs"] == 1
    # random's two seeds: the second half vs the evens: c {6..11} & {0,2,..,10} = {6,8,10}; f {2,3} & {0,2} = {2}
    assert ov.loc[("random", "random"), "jaccard"] == pytest.approx(4 / (8 + 8 - 4))
    # imp vs random at the same seed: seed 0 disjoint (0); seed 1 first half vs evens: 4 of 12 -> mean 1/6
    assert ov.loc[("imp", "random"), "jaccard"] == pytest.approx((0 + 4 / 12) / 2)
    assert ov.loc[("random", "imp"), "jaccard"] == ov.loc[("imp", "random"), "jaccard"]  # both cells of the map
    assert ov["chance_uniform"].iloc[0] == pytest.approx(0.5 / 1.5)
    # layer-matched chance: both layers keep half, so it equals the uniform figure here
    assert ov["chance"].iloc[0] == pytest.approx((6 * 6 / 12 + 2 * 2 / 4) / (12 + 4 - 6 * 6 / 12 - 2 * 2 / 4))


def test_layer_matched_chance_is_the_overlap_of_random_masks_with_the_same_layer_counts():
    rng = np.random.default_rng(0)
    sizes, keep_a, keep_b = {"c": 20_000, "f": 500}, {"c": 200, "f": 400}, {"c": 300, "f": 450}
    a = {k: np.arange(n) < keep_a[k] for k, n in sizes.items()}
    b = {k: np.arange(n) < keep_b[k] for k, n in sizes.items()}
    sims = []
    for _ in range(200):  # random masks with exactly those per-layer counts
        ra = {k: rng.permutation(a[k]) for k in sizes}
        rb = {k: rng.permutation(b[k]) for k in sizes}
        sims.append(tickets.jaccard(np.concatenate(list(ra.values())), np.concatenate(list(rb.values()))))
    assert tickets.layer_matched_chance(a, b) == pytest.approx(np.mean(sims), abs=1e-3)
    # uneven layers: far above the uniform figure at the same density (the audit's 15% "overlap")
    density = (200 + 400) / 20_500
    assert tickets.layer_matched_chance(a, a) > 5 * tickets.chance(density)


def test_layer_density_is_the_kept_fraction_per_layer(make_row):
    masks, rows = _masks_and_rows(make_row)
    ld = tickets.layer_density(rows, masks).set_index(["family", "layer"])
    assert ld.loc[("imp", "c"), "kept"] == 0.5 and ld.loc[("imp", "f"), "weights"] == 4
    assert ld.index.get_level_values("layer").tolist()[:2] == ["c", "f"]  # model order


def _barrier_rows(make_row, specs):
    rows = []
    for spec, step, barriers in specs:
        for seed, b in enumerate(barriers):
            cfg = json.dumps({"prune.method": "imp", "seed": seed, "prune.rewind_step": spec})
            for level in (0, 1):
                errs = [0.1, 0.1 + b, 0.1]
                rows.append(make_row(run_id=f"{spec}{seed}", seed=seed, level=level, density=0.5 ** level,
                                     rewind_spec=spec, rewind_step=step, instability_barrier=b,
                                     instability_errors=errs, config_json=cfg))
    return pd.DataFrame(rows)


# Known answers, 3 seeds, levels 0 and 1: 0it is far above 2% (unstable), 10it has a mean under 2% that its
# spread does not let a test support, 50it is far below (stable).
_SPECS = [("0it", 0, [0.10, 0.11, 0.09]), ("10it", 10, [0.01, 0.0, 0.015]), ("50it", 50, [0.002, 0.001, 0.003])]


def test_instability_stability_is_a_test_not_a_mean(make_row):
    from scipy import stats as sps

    from analysis import stats

    rows = _barrier_rows(make_row, _SPECS)
    s, t = instability.summary(rows), instability.tests(rows)
    one = s[(s["rewind_spec"] == "0it") & (s["level"] == 1)].iloc[0]
    assert one["barrier"] == pytest.approx(0.1) and one["seeds"] == 3 and one["lo"] < 0.1 < one["hi"]
    assert len(t) == 6 and set(t["n"]) == {3}
    v = t.set_index(["rewind_spec", "level"])
    p = sps.ttest_1samp([0.002, 0.001, 0.003], 0.02, alternative="less").pvalue
    assert v.loc[("50it", 1), "p_below"] == pytest.approx(p)
    assert v.loc[("50it", 1), "p_below_holm"] == pytest.approx(min(1, 6 * p))  # the smallest p: Holm's first step
    # The quoted bound is the test's own: under 2% exactly when p_below < 0.05.
    assert ((v["upper"] < 0.02) == (v["p_below"] < 0.05)).all()
    assert v.loc[("10it", 1), "upper"] == pytest.approx(
        np.mean([0.01, 0.0, 0.015]) + sps.t.ppf(0.95, 2) * np.std([0.01, 0.0, 0.015], ddof=1) / np.sqrt(3))
    assert v["verdict"].to_dict() == {("0it", 0): "unstable", ("0it", 1): "unstable", ("10it", 0): "inconclusive",
                                      ("10it", 1): "inconclusive", ("50it", 0): "stable", ("50it", 1): "stable"}
    assert instability.stable_points(t) == {"imp": ["50it"]}
    words = " ".join(instability.sentences(s, t))
    assert "imp, rewind to 0it: barrier detectably below 2% at 0 of 2 levels; detectably above at 100%, 50%" in words
    assert ("rewind to 10it: barrier detectably below 2% at 0 of 2 levels; inconclusive with 3 seeds at 100%, 50%"
            in words)
    assert "imp: stable at every level" in words and "for rewind points 50it; the earliest is 50it." in words
    head = instability.summary_of(instability.from_levels(stats.level_summary(rows)), t)
    assert head.startswith("Instability analysis: imp: stable at every level")
    assert "(largest mean 0.100, rewind 0it at 100% density)" in head
    # Without the clearly stable point, the mean under 2% is said as a point estimate, never as stability.
    rows = _barrier_rows(make_row, _SPECS[:2])
    s, t = instability.summary(rows), instability.tests(rows)
    words = " ".join(instability.sentences(s, t))
    assert ("imp: no rewind point tried is shown stable at every level; the mean barrier is below 2% at every "
            "level for 10it (a point estimate, not a test).") in words
    assert instability.paths(rows)["alpha"].unique().tolist() == [0.0, 0.5, 1.0]


def test_a_level_stable_on_its_own_test_but_not_after_holm_still_counts_for_the_whole_rewind_point(make_row):
    # Intersection-union: each level passing at alpha is enough for the conjunction; Holm is for per-level claims.
    rows = _barrier_rows(make_row, [("0it", 0, [0.015, 0.008, 0.012]), ("9it", 9, [0.10, 0.11, 0.09])])
    t = instability.tests(rows).set_index(["rewind_spec", "level"])
    assert (t.loc["0it", "p_below"] < 0.05).all() and (t.loc["0it", "p_below_holm"] >= 0.05).all()
    assert instability.stable_points(t.reset_index()) == {"imp": ["0it"]}


def test_the_report_adds_ticket_and_instability_sections_only_with_their_data(make_row, tmp_path):
    masks, rows = _masks_and_rows(make_row)
    rows["probe_cams"] = None
    report.build(rows, tmp_path / "plain")
    md = (tmp_path / "plain" / "report.md").read_text()
    assert "## (g)" not in md and "## (h)" not in md
    rows["instability_barrier"] = [0.0, 0.05] * 4
    rows["instability_errors"] = [[0.1, 0.1, 0.1], [0.1, 0.15, 0.1]] * 4
    report.build(rows, tmp_path / "full", masks)
    md = (tmp_path / "full" / "report.md").read_text()
    assert "## (g) Ticket overlap" in md and "## (h) Instability analysis" in md
    assert "the masks of two seeds of imp have Jaccard index 1.00" in md and "layer-matched chance" in md
    assert "share of" not in md.split("## (g)", 1)[1].split("## (h)", 1)[0]  # a Jaccard index is not a share
    for png in ("mask_overlap", "layer_density", "instability"):
        assert (tmp_path / "full" / f"{png}.png").read_bytes()[:4] == b"\x89PNG"
    assert "<script" not in (tmp_path / "full" / "report.html").read_text()
    per_seed = pd.read_csv(tmp_path / "full" / "per_seed.csv")
    assert per_seed.loc[(per_seed["method"] == "random") & (per_seed["seed"] == 0) & (per_seed["level"] == 1),
                        "mask_jaccard_imp"].item() == 0.0


def test_a_method_with_another_methods_masks_is_drawn_once(make_row):
    masks, rows = _masks_and_rows(make_row)
    masks[("re0", 1)], masks[("re1", 1)] = masks[("imp0", 1)], masks[("imp1", 1)]
    extra = rows[rows["method"] == "imp"].copy()
    extra["method"], extra["run_id"] = "reinit", extra["run_id"].str.replace("imp", "re")
    assert tickets.same_masks(pd.concat([rows, extra]), masks) == {"reinit": "imp"}
    masks[("re1", 1)] = masks[("rnd1", 1)]  # one seed differs: no longer the same masks
    assert tickets.same_masks(pd.concat([rows, extra]), masks) == {}


def test_designs_are_compared_at_matched_density_and_never_merged(make_row):
    masks, rows = _masks_and_rows(make_row)
    imp = rows[rows["method"] == "imp"]
    k = imp.assign(run_id=imp["run_id"] + "k", config_json=[c[:-1] + ', "prune.rewind_step": "5it"}'
                                                           for c in imp["config_json"]])
    other_rate = imp.assign(run_id=imp["run_id"] + "r", density=imp["density"] * 0.8,
                            config_json=[c[:-1] + ', "prune.rate": 0.6}' for c in imp["config_json"]])
    for rid in ("imp0", "imp1"):
        masks[(rid + "k", 1)] = masks[(rid + "r", 1)] = masks[(rid, 1)]
    ov = tickets.overlap(pd.concat([imp, k, other_rate]), masks)
    names = set(ov["a"])
    k_name = next(n for n in names if "prune.rewind_step=5it" in n)
    rate_name = next(n for n in names if "prune.rate=0.6" in n)
    (base,) = names - {k_name, rate_name}
    pair = ov[(ov["a"] == k_name) & (ov["b"] == base)]
    assert pair["jaccard"].tolist() == [1.0]  # the same masks under two rewind points: compared, equal
    assert set(ov.loc[ov["a"] == rate_name, "b"]) == {rate_name}  # another density: compared with itself only


def test_instability_never_pools_two_designs_that_share_a_rewind_point(make_row):
    rows = []
    for rate, b in [(0.5, 0.001), (0.8, 0.05)]:
        for seed in range(2):
            cfg = json.dumps({"prune.method": "imp", "seed": seed, "prune.rewind_step": "0it", "prune.rate": rate})
            rows.append(make_row(run_id=f"{rate}{seed}", seed=seed, level=1, density=1 - rate,
                                 instability_barrier=b + 0.001 * seed, instability_errors=[0.1, 0.1 + b, 0.1],
                                 config_json=cfg))
    s = instability.summary(pd.DataFrame(rows)).set_index("family")
    assert s.loc["imp [prune.rate=0.5]", "barrier"] == pytest.approx(0.0015)
    assert s.loc["imp [prune.rate=0.8]", "barrier"] == pytest.approx(0.0505)
    assert set(instability.paths(pd.DataFrame(rows))["family"]) == set(s.index)


def test_each_rows_jaccard_to_the_same_seeds_imp_mask_by_hand(make_row):
    masks, rows = _masks_and_rows(make_row)
    j = tickets.jaccard_to_imp(rows, masks)
    by_run = dict(zip(rows["run_id"] + rows["level"].astype(str), j, strict=True))
    assert by_run["imp01"] == 1.0 and by_run["imp11"] == 1.0
    assert by_run["rnd01"] == 0.0  # the other half of every layer
    # seed 1: even indices vs the first half: c keeps {0, 2, 4} of 6 & 6 -> 3 / 9; f keeps {0} of 2 & 2 -> 1 / 3
    assert by_run["rnd11"] == pytest.approx((3 + 1) / (9 + 3))
    assert j.index.equals(rows.index)
