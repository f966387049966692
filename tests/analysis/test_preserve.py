import numpy as np
import pandas as pd
import pytest

from analysis import preserve

DENS = {0: 1.0, 1: 0.16, 2: 0.064, 3: 0.0256}


def _rows(effects: dict[str, dict[str, float]], noise: float = 0.01, seeds: int = 10, seed: int = 0) -> pd.DataFrame:
    """Synthetic rows of the three arms: per (seed, level) a shared base value of each metric, plus the arm's
    effect (metric -> shift) and independent noise of SD `noise`."""
    rng = np.random.default_rng(seed)
    metrics = ("lrp_spearman", "occlusion_spearman", "cam_spearman", "cam_faithfulness", "test_acc", "pred_agreement")
    recs = []
    for s in range(seeds):
        for level, density in DENS.items():
            base = {m: rng.uniform(0.4, 0.8) for m in metrics}
            for arm, method in preserve.ARMS.items():
                shift = effects.get(arm, {}) if level > 0 else {}
                recs.append({"method": method, "seed": s, "level": level, "density": density, "status": "ok",
                             **{m: base[m] + shift.get(m, 0.0) + rng.normal(0, noise) for m in metrics}})
    return pd.DataFrame(recs)


@pytest.mark.parametrize(("effects", "noise", "outcome"), [
    ({"B": {"lrp_spearman": 0.1}}, 0.003, "explanation preservation beyond function"),
    ({"B": {"lrp_spearman": 0.1}, "C": {"lrp_spearman": 0.1}}, 0.01, "function preservation"),
    ({"B": {"cam_spearman": 0.1}}, 0.05, "the loss fits its own yardstick"),
    ({"B": {"lrp_spearman": 0.1, "cam_faithfulness": -0.1}}, 0.01, "the loss fits its own yardstick"),
    ({}, 0.005, "no effect"),
    ({"B": {"lrp_spearman": 0.02}}, 0.2, "inconclusive with 10 seeds"),
])
def test_each_outcome_of_the_decision_rule_on_synthetic_rows(effects, noise, outcome):
    d = preserve.decide(_rows(effects, noise))
    assert d.outcome == outcome, d.sentence
    primary = d.tests[d.tests["role"] == "primary"]
    assert len(primary) == 6 and set(primary["density"]) == {0.16, 0.064, 0.0256}  # one family of 6


def test_a_guard_that_fails_stops_beyond_function_and_inconclusive_names_the_needed_effect():
    d = preserve.decide(_rows({"B": {"lrp_spearman": 0.1, "test_acc": -0.05}}, 0.003))
    assert d.outcome != "explanation preservation beyond function"
    d = preserve.decide(_rows({"B": {"lrp_spearman": 0.02}}, 0.2))
    assert "80% power needs an LRP difference of" in d.sentence


def test_the_pilot_picks_the_largest_safe_lambda_and_the_smallest_matching_distillation_weight():
    recs = []
    for s in (100, 101):
        for level, density in ((0, 1.0), (3, 0.064)):
            recs.append({"method": "imp", "seed": s, "level": level, "density": density, "status": "ok",
                         "lambda_fid": 0.0, "kd_weight": 0.0, "test_acc": 0.90, "pred_agreement": 0.93})
            for lam, acc, agree in ((0.1, 0.901, 0.935), (0.3, 0.897, 0.94), (1.0, 0.893, 0.95), (3.0, 0.88, 0.96)):
                recs.append({"method": "imp_fid", "seed": s, "level": level, "density": density, "status": "ok",
                             "lambda_fid": lam, "kd_weight": 0.0, "test_acc": acc, "pred_agreement": agree})
            for w, agree in ((0.1, 0.935), (0.3, 0.939), (1.0, 0.941), (3.0, 0.97)):
                recs.append({"method": "imp_kd", "seed": s, "level": level, "density": density, "status": "ok",
                             "lambda_fid": 0.0, "kd_weight": w, "test_acc": 0.9, "pred_agreement": agree})
    c = preserve.pilot_choice(pd.DataFrame(recs))
    # lambda 1 loses 0.7 points (> 0.5): 0.3 is the largest within; its agreement 0.94 is first reached at w = 1
    assert c.lambda_fid == 0.3 and c.kd_weight == 1.0


def test_contrasts_hold_each_paired_difference_with_an_interval_that_covers_it():
    rows = _rows({"B": {"lrp_spearman": 0.1}, "C": {"lrp_spearman": 0.1, "cam_spearman": -0.2}}, 0.01)
    c = preserve.contrasts(rows).set_index(["metric", "test", "density"])
    assert len(c) == 3 * 2 * 3 and (c["n"] == 10).all()
    for density in (0.16, 0.064, 0.0256):
        ba, bc = c.loc[("lrp_spearman", "B - A", density)], c.loc[("lrp_spearman", "B - C", density)]
        assert ba["lo"] < 0.1 < ba["hi"] and bc["lo"] < 0 < bc["hi"] and ba["hi"] - ba["lo"] < 0.05
        assert c.loc[("cam_spearman", "B - C", density), "lo"] > 0.15  # C's loss of Grad-CAM shows as B - C > 0
