"""The preservation study's decision rule (issue 34), fixed before the study ran and printed in its README.

Three arms retrain the same IMP mask from the same rewind point, paired by seed and level: A = `imp`
(cross-entropy), B = `imp_fid` (+ Grad-CAM fidelity to the dense maps), C = `imp_kd` (+ distillation to the
dense logits: the function-preserving control). Evidence is read on yardsticks no arm trains on:

- primary: LRP agreement with the dense LRP maps; one Holm family of 6 one-sided paired t-tests, B - A and
  B - C at three densities, alpha 0.05;
- secondary: occlusion agreement, the same 6 tests in their own family;
- guards: accuracy (B non-inferior to A at 1 point), ROAD of B's own maps (non-inferior at 0.02, and not
  detectably lower), top-1 agreement with dense (reported);
- Grad-CAM agreement, the yardstick B trains on: reported, and read only for "the loss fits its yardstick".

The outcome, first that holds: "explanation preservation beyond function" (B > A and B > C at some density,
guards pass there); "function preservation" (B > A at some density, B - C equivalent within +-0.05 there);
"the loss fits its own yardstick" (Grad-CAM up while neither LRP nor occlusion is, or ROAD down); "no
effect" (B - A equivalent within +-0.05 at every density); otherwise "inconclusive with N seeds", with the
difference 80% power would need at the family's first Holm step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from analysis.inference import ALPHA, POWER, adjust

ARMS = {"A": "imp", "B": "imp_fid", "C": "imp_kd"}
PRIMARY, SECONDARY, OWN, ROAD = "lrp_spearman", "occlusion_spearman", "cam_spearman", "cam_faithfulness"
EQUIVALENCE = 0.05  # +- margin of "no difference" in an agreement (Spearman)
ACC_MARGIN, ROAD_MARGIN = 0.01, 0.02
FASHION_DENSITIES = (0.16, 0.064, 0.0256)


def _p(d: np.ndarray, null: float, alternative: str) -> float:
    """One-sided paired t-test p of H0 `mean <= null` (greater) or `mean >= null` (less)."""
    d = d[np.isfinite(d)]
    if len(d) < 2:
        return np.nan
    if d.std(ddof=1) == 0:
        return 0.0 if (d.mean() > null if alternative == "greater" else d.mean() < null) else 1.0
    return float(stats.ttest_1samp(d, null, alternative=alternative).pvalue)


def one_sided_d(n: int, alpha: float) -> float:
    """The standardised difference a one-sided paired t-test on n pairs detects with 80% power at `alpha`."""
    from statsmodels.stats.power import TTestPower

    return float(TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=POWER, alternative="larger"))


def differences(rows: pd.DataFrame, metric: str, arm: str, ref: str, level: int) -> np.ndarray:
    """Per seed, `arm`'s value minus `ref`'s at `level` (seeds both finished)."""
    d = rows[(rows["level"] == level) & (rows["status"] == "ok")]
    wide = d.pivot_table(index="seed", columns="method", values=metric, aggfunc="first")
    if ARMS[arm] not in wide or ARMS[ref] not in wide:
        return np.array([])
    return (wide[ARMS[arm]] - wide[ARMS[ref]]).dropna().to_numpy(dtype=float)


def levels_at(rows: pd.DataFrame, densities: tuple[float, ...]) -> dict[int, float]:
    """Level -> nominal density: the level whose mean density is nearest each declared one (within 10%)."""
    dens = rows.groupby("level")["density"].mean()
    out = {}
    for want in densities:
        level = int((np.log(dens) - np.log(want)).abs().idxmin())
        if abs(dens[level] / want - 1) < 0.1:
            out[level] = want
    return out


def family(rows: pd.DataFrame, metric: str, tests: list[tuple[str, str, int]], null: float = 0.0,
           alternative: str = "greater") -> pd.DataFrame:
    """One Holm family: each (arm, ref, level) test of `metric`'s paired difference against `null`."""
    recs = []
    for arm, ref, level in tests:
        d = differences(rows, metric, arm, ref, level)
        recs.append({"metric": metric, "test": f"{arm} - {ref}", "level": level, "n": len(d),
                     "mean": float(d.mean()) if len(d) else np.nan,
                     "sd": float(d.std(ddof=1)) if len(d) > 1 else np.nan, "p": _p(d, null, alternative)})
    out = pd.DataFrame(recs)
    out["p_holm"] = adjust(out["p"]) if len(out) else []
    out["holds"] = out["p_holm"] < ALPHA
    return out


def equivalent(rows: pd.DataFrame, metric: str, arm: str, ref: str, levels: list[int]) -> pd.Series:
    """Per level, whether TOST puts `arm` - `ref` within +-EQUIVALENCE (Holm over the levels)."""
    p = [max(_p(d, -EQUIVALENCE, "greater"), _p(d, EQUIVALENCE, "less"))
         for d in (differences(rows, metric, arm, ref, lv) for lv in levels)]
    return pd.Series(adjust(p) < ALPHA, index=levels)


def contrasts(rows: pd.DataFrame, densities: tuple[float, ...] = FASHION_DENSITIES,
              metrics: tuple[str, ...] = (PRIMARY, SECONDARY, OWN)) -> pd.DataFrame:
    """B - A and B - C per metric and declared density: the mean paired difference and its two-sided 95% t
    interval (what the figure draws; the decision reads `decide`'s one-sided, Holm-adjusted tests)."""
    recs = []
    for level, density in sorted(levels_at(rows, densities).items()):
        for metric in metrics:
            for arm, ref in (("B", "A"), ("B", "C")):
                d = differences(rows, metric, arm, ref, level)
                d = d[np.isfinite(d)]
                m = float(d.mean()) if len(d) else np.nan
                half = (float(stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
                        if len(d) > 1 else np.nan)
                recs.append({"metric": metric, "test": f"{arm} - {ref}", "density": density, "n": len(d),
                             "mean": m, "lo": m - half, "hi": m + half})
    return pd.DataFrame(recs)


@dataclass(frozen=True)
class Decision:
    outcome: str
    sentence: str
    tests: pd.DataFrame  # every test the rule read, one row each


def decide(rows: pd.DataFrame, densities: tuple[float, ...] = FASHION_DENSITIES) -> Decision:
    """The rule of the module's docstring over `rows` (the three arms' rows)."""
    at = levels_at(rows, densities)
    lv = sorted(at)
    both = [(arm, ref, level) for level in lv for arm, ref in (("B", "A"), ("B", "C"))]
    primary, secondary = family(rows, PRIMARY, both), family(rows, SECONDARY, both)
    own = family(rows, OWN, [("B", "A", level) for level in lv])
    acc = family(rows, "test_acc", [("B", "A", level) for level in lv], null=-ACC_MARGIN)
    road_ni = family(rows, ROAD, [("B", "A", level) for level in lv], null=-ROAD_MARGIN)
    road_down = family(rows, ROAD, [("B", "A", level) for level in lv], alternative="less")
    up = {t: set(primary[(primary["test"] == t) & primary["holds"]]["level"]) for t in ("B - A", "B - C")}
    guards = set(acc[acc["holds"]]["level"]) & set(road_ni[road_ni["holds"]]["level"])
    eq_bc, eq_ba = equivalent(rows, PRIMARY, "B", "C", lv), equivalent(rows, PRIMARY, "B", "A", lv)
    held_out_up = up["B - A"] | set(secondary[(secondary["test"] == "B - A") & secondary["holds"]]["level"])
    beyond = up["B - A"] & up["B - C"] & guards
    function = {level for level in up["B - A"] if eq_bc.get(level, False)}
    n = int(primary["n"].max()) if len(primary) else 0
    name = lambda levels: ", ".join(f"{100 * at[v]:.3g}%" for v in sorted(levels))  # noqa: E731
    if beyond:
        outcome, why = "explanation preservation beyond function", f"B > A and B > C on LRP at {name(beyond)}"
    elif function:
        outcome, why = "function preservation", f"B > A on LRP and B - C within ±{EQUIVALENCE} at {name(function)}"
    elif (own["holds"].any() and not held_out_up) or road_down["holds"].any():
        what = "Grad-CAM up, LRP and occlusion not" if own["holds"].any() and not held_out_up else "ROAD down"
        outcome, why = "the loss fits its own yardstick", what
    elif len(lv) and eq_ba.all():
        outcome, why = "no effect", f"B - A within ±{EQUIVALENCE} on LRP at every density"
    else:
        sd = float(primary["sd"].max()) if len(primary) else np.nan
        mde = one_sided_d(n, ALPHA / max(len(primary), 1)) * sd if n >= 2 else np.nan
        outcome = f"inconclusive with {n} seeds"
        why = f"80% power needs an LRP difference of {mde:.3f} (paired SD up to {sd:.3f}, alpha {ALPHA}/{len(primary)})"
    tests = pd.concat([primary.assign(role="primary"), secondary.assign(role="secondary"),
                       own.assign(role="own yardstick"), acc.assign(role="guard: accuracy non-inferior"),
                       road_ni.assign(role="guard: ROAD non-inferior"), road_down.assign(role="ROAD lower")])
    tests["density"] = tests["level"].map(at)
    return Decision(outcome, f"{outcome}: {why}.", tests.reset_index(drop=True))


@dataclass(frozen=True)
class PilotChoice:
    lambda_fid: float | None  # B's: the largest keeping accuracy within 0.5 points of A (None: none does)
    kd_weight: float | None  # C's: the smallest whose top-1 agreement with dense reaches B's (None: none does)
    table: pd.DataFrame  # per arm setting: accuracy minus A's and top-1 agreement, means over the pilot seeds


def pilot_choice(rows: pd.DataFrame, density: float = 0.064, tolerance: float = 0.005) -> PilotChoice:
    """The pilot's rule (declared in the study's README before either ran), at the level nearest `density`."""
    (level,) = levels_at(rows, (density,)) or [None]
    if level is None:
        raise ValueError(f"the pilot rows reach no level near {density:.3g} density")
    d = rows[(rows["level"] == level) & (rows["status"] == "ok")]
    a = d[d["method"] == ARMS["A"]].set_index("seed")
    recs = []
    for (method, lam, w), g in d[d["method"] != ARMS["A"]].groupby(["method", "lambda_fid", "kd_weight"]):
        g = g.set_index("seed")
        recs.append({"method": method, "lambda_fid": lam, "kd_weight": w, "seeds": len(g),
                     "acc_minus_A": float((g["test_acc"] - a["test_acc"]).mean()),
                     "pred_agreement": float(g["pred_agreement"].mean())})
    t = pd.DataFrame(recs)
    fid = t[(t["method"] == ARMS["B"]) & (t["acc_minus_A"] >= -tolerance)]
    lam = float(fid["lambda_fid"].max()) if len(fid) else None
    kd_w = None
    if lam is not None:
        target = float(t[(t["method"] == ARMS["B"]) & (t["lambda_fid"] == lam)]["pred_agreement"].iloc[0])
        kd = t[(t["method"] == ARMS["C"]) & (t["pred_agreement"] >= target)]
        kd_w = float(kd["kd_weight"].min()) if len(kd) else None
    return PilotChoice(lam, kd_w, t)
