"""The study's numbers: means with 95% CIs over seeds, and paired differences against IMP.

A comparison is only made between rows that share a *design* (every config key but the method, its
guidance weight, lambda_fid and the seed: so the same data, model, schedule, rewind and pruning rate),
the same seed and the same level. Intervals are t intervals over seeds (scipy's ttest_1samp), the usual
choice for 3-10 paired replicates, where a bootstrap has too few points to resample.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from scipy import stats

from lthray.methods import METHODS

METRICS = {
    "test_acc": "test accuracy",
    "cam_spearman": "Grad-CAM Spearman to dense",
    "cam_iou": "Grad-CAM top-k IoU to dense",
    "cam_faithfulness": "Grad-CAM faithfulness",
    "cam_energy_inside": "Grad-CAM mass on the object",
    "cam_pointing": "Grad-CAM peak on the object",
    "cam_concentration": "area holding half the Grad-CAM mass",
    "lrp_spearman": "LRP Spearman to dense",
    "lrp_energy_inside": "LRP mass on the object",
    "lrp_pointing": "LRP peak on the object",
    "lrp_concentration": "area holding half the LRP mass",
    "concept_topk_overlap": "concept top-k overlap with dense",
    "concept_weight_spearman": "concept weight Spearman to dense",
    "pcbm_acc": "PCBM accuracy",
    "instability_barrier": "instability barrier (test error)",
}
FAMILY = ["method", "guidance_weight", "lambda_fid"]
# Keys that may differ within one comparison: the method and its own knobs, the seed, and the
# instability analysis, which trains a second copy beside the measured network but never changes it.
_NOT_DESIGN = {"prune.method", "prune.guidance_weight", "prune.lambda_fid", "prune.pai_iterations", "seed"}
_NOT_DESIGN_PREFIX = ("instability.",)
REFERENCE = ("imp", 0.0, 0.0)


def mean_ci(x: np.ndarray | pd.Series, level: float = 0.95) -> tuple[float, float, float, int]:
    """(mean, low, high, n) of the finite values: a t interval; low = high = nan when n < 2."""
    v = np.asarray(x, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan, math.nan, math.nan, 0
    if len(v) < 2 or np.ptp(v) == 0:
        m = float(v.mean())
        return (m, math.nan, math.nan, len(v)) if len(v) < 2 else (m, m, m, len(v))
    ci = stats.ttest_1samp(v, 0.0).confidence_interval(level)
    return float(v.mean()), float(ci.low), float(ci.high), len(v)


def with_design(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows plus `design` (a short label of what must match for a comparison) and `family` labels."""
    def design(cfg: str) -> str:
        flat = {k: v for k, v in json.loads(cfg).items()
                if k not in _NOT_DESIGN and not k.startswith(_NOT_DESIGN_PREFIX)}
        return json.dumps(flat, sort_keys=True)

    out = rows.copy()
    out["design"] = out["config_json"].map(design)
    out["family"] = [label(m, g, f) for m, g, f in zip(out["method"], out["guidance_weight"], out["lambda_fid"],
                                                         strict=True)]
    return out


def series(d: pd.DataFrame, ignore: tuple[str, ...] = ()) -> list[str]:
    """The one 'family [design]' label of each row of `d` (with_design columns): the family, plus what
    sets its design apart from the others in `d` (keys in `ignore` left out); the family alone when
    nothing does."""
    names = design_names(d, ignore)
    return [f"{f} [{names[g]}]" if names[g] else f for f, g in zip(d["family"], d["design"], strict=True)]


def is_guided(method: str) -> bool:
    """Guided-ness from the method registry; a method this lthray does not know is not counted as guided."""
    return method in METHODS and METHODS.get(method).guided


def design_names(summary: pd.DataFrame, ignore: tuple[str, ...] = ()) -> dict[str, str]:
    """Each design named by the config keys in which the designs differ ('prune.rewind_step=25it'), keys
    in `ignore` (shown some other way, e.g. on an axis) left out; '' when nothing else sets it apart."""
    designs = sorted(summary["design"].unique())
    if len(designs) <= 1:
        return {d: "" for d in designs}
    flats = [json.loads(d) for d in designs]
    keys = sorted(k for k in set().union(*flats)
                  if k not in ignore and len({json.dumps(f.get(k)) for f in flats}) > 1)
    return {d: ", ".join(f"{k}={f.get(k)}" for k in keys) for d, f in zip(designs, flats, strict=True)}


def label(method: str, g: float, lam: float) -> str:
    """'cam_guided (g=0.5)', 'imp + fid 0.5', 'imp'."""
    s = method + (f" (g={g:g})" if g > 0 else "")
    return s + (f" + fid {lam:g}" if lam > 0 else "")


def level_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (design, family, level): mean density and, per metric, mean and 95% CI over seeds.
    Diverged levels are left out (their metrics are null), and counted in `diverged`."""
    d = with_design(rows)
    out = []
    for (design, family, level), g in d.groupby(["design", "family", "level"], sort=True):
        ok = g[g["status"] == "ok"]
        rec = {"design": design, "family": family, "method": g["method"].iloc[0], "level": int(level),
               "density": float(g["density"].mean()), "seeds": int(ok["seed"].nunique()),
               "diverged": int((g["status"] != "ok").sum()), "rewind": g["rewind"].iloc[0],
               "rewind_spec": g["rewind_spec"].iloc[0], "rewind_step": int(g["rewind_step"].iloc[0])}
        for m in METRICS:
            rec[m], rec[f"{m}_lo"], rec[f"{m}_hi"], _ = mean_ci(ok[m])
        out.append(rec)
    return pd.DataFrame(out)


def paired_differences(rows: pd.DataFrame, reference: tuple[str, float, float] = REFERENCE) -> pd.DataFrame:
    """Per (design, family, level) of every non-reference family: mean and 95% CI of (family - IMP)
    over seeds, each difference taken within one seed (same design and level). Pruned levels only."""
    d = with_design(rows[(rows["status"] == "ok") & (rows["level"] > 0)])
    ref_label = label(*reference)
    ref = d[d["family"] == ref_label].set_index(["design", "seed", "level"])
    out = []
    for (design, family, level), g in d[d["family"] != ref_label].groupby(["design", "family", "level"]):
        g = g.set_index(["design", "seed", "level"])
        common = g.index.intersection(ref.index)
        if len(common) == 0:
            continue
        rec = {"design": design, "family": family, "method": g["method"].iloc[0], "level": int(level),
               "density": float(g.loc[common, "density"].mean()), "pairs": len(common)}
        for m in METRICS:
            diff = g.loc[common, m].astype(float).to_numpy() - ref.loc[common, m].astype(float).to_numpy()
            rec[f"d_{m}"], rec[f"d_{m}_lo"], rec[f"d_{m}_hi"], _ = mean_ci(diff)
        out.append(rec)
    return pd.DataFrame(out)


def verdict(mean: float, lo: float, hi: float) -> str:
    """'higher' / 'lower' when the CI excludes 0, 'no detectable difference' when it spans 0, 'no CI' if n < 2."""
    if not np.isfinite(lo) or not np.isfinite(hi):
        return "no CI"
    if lo > 0:
        return "higher"
    if hi < 0:
        return "lower"
    return "no detectable difference"


def pct(d: float) -> str:
    return f"{100 * d:.2g}%" if d < 0.1 else f"{100 * d:.0f}%"


def sentence(rec: pd.Series, metric: str = "cam_spearman", scale: float = 1.0, unit: str = "") -> str:
    """One generated sentence from a paired-difference record, e.g.
    'At 2.6% density, cam_guided (g=0.5) keeps Grad-CAM Spearman to dense 0.12 higher than IMP (95% CI 0.08
    to 0.16) at -0.4 accuracy points (CI -0.9 to 0.1), over 3 paired seeds.'"""
    def part(m: str, s: float, u: str, name: str) -> str:
        mean, lo, hi = (rec[f"d_{m}"] * s, rec[f"d_{m}_lo"] * s, rec[f"d_{m}_hi"] * s)
        v = verdict(mean, lo, hi)
        if v == "no CI":
            return f"{name} {mean:+.3g}{u} (one pair: no CI)"
        if v == "no detectable difference":
            return f"no detectable difference in {name} ({mean:+.3g}{u}, 95% CI {lo:+.3g} to {hi:+.3g})"
        return f"{name} {abs(mean):.3g}{u} {v} than IMP (95% CI {lo:+.3g} to {hi:+.3g})"

    fid = part(metric, scale, unit, METRICS[metric])
    acc = part("test_acc", 100.0, " points", "accuracy")
    return (f"At {pct(rec['density'])} density (level {rec['level']}), {rec['family']} shows {fid}, "
            f"and {acc}, over {rec['pairs']} paired seeds.")


def tally(diffs: pd.DataFrame, metric: str) -> dict[str, int]:
    """How many (family, level) comparisons are higher / lower / not detectably different."""
    out = {"higher": 0, "lower": 0, "no detectable difference": 0, "no CI": 0}
    for _, r in diffs.iterrows():
        out[verdict(r[f"d_{metric}"], r[f"d_{metric}_lo"], r[f"d_{metric}_hi"])] += 1
    return out


def knee(summary: pd.DataFrame, family: str = "imp", tolerance: float = 0.01,
         design: str | None = None) -> pd.Series | None:
    """IMP's sparsest level whose mean accuracy is within `tolerance` of dense (None if no pruned level is),
    within one design (default: the design with the most IMP levels, so designs are never mixed)."""
    s = summary[summary["family"] == family]
    if s.empty:
        return None
    design = design if design is not None else s["design"].value_counts().sort_index().idxmax()
    s = s[s["design"] == design].sort_values("level")
    if s.empty:
        return None
    dense = s.iloc[0]["test_acc"]
    ok = s[(s["level"] > 0) & (s["test_acc"] >= dense - tolerance)]
    return ok.iloc[-1] if not ok.empty else None
