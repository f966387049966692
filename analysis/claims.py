"""The paper's three claims, each stated and tested on the study's rows whichever way it comes out.

1. Accuracy falls with pruning: a pruned level's accuracy against its own dense model, paired by seed.
2. Pruned maps focus on a different, smaller part: *drift* = Grad-CAM (and LRP) agreement with the
   dense maps below the same seed's same-initialisation floor (the dense model's copy from the same
   initialisation and rewind point, another data order), paired by seed; *different* = below the
   seed-to-seed floor (two equally good dense models of different seeds agree that much), a constant per
   design, kept beside it and named as what it is; *smaller* = the area holding half the map's mass
   shrinks against the dense model's, paired by seed.
3. Pruned networks rely on different concepts: the top-k concept overlap with the dense PCBM below the
   same-initialisation copy's (paired by seed) and below that backbone's own refit overlap (the refit
   floor), paired by seed; made only for designs whose concept measure separates an untrained backbone
   from a refitted one (`floors.concept_range`).
Beside them, the function: top-1 prediction agreement with dense below the same-initialisation copy's.

Each claim is one comparison family (every method at every pruned level), Holm-adjusted, with TOST at
the declared margin before a "no change" is said (analysis.inference). A per-seed floor (same
initialisation, refit) is paired with its seed, so its spread is in the test; the seed-to-seed floor is
a constant per design, and the report prints its spread beside it.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import floors, inference, stats


def _against(rows: pd.DataFrame, metric: str, baseline: str | float | pd.Series) -> pd.DataFrame:
    """Per (design, family, level > 0): the per-seed differences metric(level) - baseline, where baseline is
    the same seed's level-0 value of column `baseline`, or a number per design (a floor: pd.Series by
    design, or one float)."""
    d = stats.with_design(rows[rows["status"] == "ok"])
    dense = d[d["level"] == 0].set_index(["design", "family", "seed"])
    recs = []
    for (design, family, level), g in d[d["level"] > 0].groupby(["design", "family", "level"]):
        g = g.set_index("seed").sort_index()
        if isinstance(baseline, str):
            idx = [(design, family, s) for s in g.index if (design, family, s) in dense.index]
            base = dense.loc[idx, baseline].astype(float).to_numpy() if idx else np.array([])
            vals = g.loc[[s for _, _, s in idx], metric].astype(float).to_numpy()
        else:
            b = baseline.get(design, math.nan) if isinstance(baseline, pd.Series) else baseline
            vals = g[metric].astype(float).to_numpy()
            base = np.full(len(vals), b)
        if len(vals) == 0 or not np.isfinite(base).any():
            continue
        recs.append({"design": design, "family": family, "method": g["method"].iloc[0], "level": int(level),
                     "density": float(g["density"].mean()), "pairs_x": list(vals - base), "seeds": len(vals)})
    return pd.DataFrame(recs)


def test(rows: pd.DataFrame, metric: str, baseline: str | float | pd.Series, margin: float) -> pd.DataFrame:
    """One claim's family: `_against` tested with inference.family_table (mean, lo, hi, p_holm, verdict...)."""
    t = _against(rows, metric, baseline)
    if t.empty:
        return t
    lo, hi = inference.RANGES.get(metric, (-math.inf, math.inf))
    fam = inference.family_table(t, "x", margin, span=hi - lo, keys=("design", "family", "method", "level",
                                                                      "density"))
    # One label per (family, design): a sweep with several designs (e.g. rewind points) says which is which.
    return fam.assign(series=stats.series(fam))


def _floor_by_design(fl: pd.DataFrame, metric: str, kind: str) -> pd.Series:
    f = fl[(fl["metric"] == metric) & (fl["kind"] == kind)] if not fl.empty else fl
    return pd.Series(dict(zip(f["design"], f["floor"], strict=True))) if not f.empty else pd.Series(dtype=float)


def all_claims(rows: pd.DataFrame, fl: pd.DataFrame, margins: dict[str, float] | None = None
               ) -> dict[str, pd.DataFrame]:
    """Every claim's test table, keyed by a short name; a claim whose inputs the rows lack is left out."""
    mg = {**inference.MARGINS, **(margins or {})}
    out = {"accuracy falls": test(rows, "test_acc", "test_acc", mg["test_acc"])}
    for name, metric in (("function changes", "pred_agreement"), ("cam drifts", "cam_spearman"),
                         ("lrp drifts", "lrp_spearman"), ("concepts drift", "concept_topk_overlap"),
                         ("cam drifts, same predictions", "cam_spearman_same_pred"),
                         ("lrp drifts, same predictions", "lrp_spearman_same_pred")):
        floor = f"floor_{metric}"
        if floor in rows and rows[floor].notna().any() and rows[metric].notna().any():
            out[name] = test(rows, metric, floor, mg[metric])
    for method in ("cam", "lrp"):
        if rows[f"{method}_concentration"].notna().any():
            out[f"{method} smaller"] = test(rows, f"{method}_concentration", f"{method}_concentration",
                                            mg[f"{method}_concentration"])
        floor = _floor_by_design(fl, f"{method}_spearman", "seed")
        if not floor.empty:
            out[f"{method} different"] = test(rows, f"{method}_spearman", floor, mg[f"{method}_spearman"])
    if rows["concept_refit_overlap"].notna().any():
        out["concepts different"] = test(rows, "concept_topk_overlap", "concept_refit_overlap",
                                         mg["concept_topk_overlap"])
    rng = floors.concept_range(rows)  # no concept claim where the measure cannot tell untrained from refitted
    blind = set(rng.loc[~rng["separates"], "design"]) if not rng.empty else set()
    for name in ("concepts drift", "concepts different"):
        if name in out and not out[name].empty:
            out[name] = out[name][~out[name]["design"].isin(blind)]
    return {k: v for k, v in out.items() if not v.empty}


def knee_sentence(acc: pd.DataFrame, design: str, margin: float, family: str = "imp") -> str:
    """Where `family` keeps its dense model's accuracy, said only as far as its tests allow: from the
    "accuracy falls" table (`acc`, margin in accuracy units), the sparsest level up to which every level is
    non-inferior to dense (one-sided paired t-test that the loss is under the margin, Holm over the claim's
    family) and the first level that is detectably lower. "Keeps" is a non-inferiority question: a level
    detectably *above* dense keeps it too, which two-sided equivalence would not say. Without a passing
    test the point estimate is given, and called one."""
    g = acc[(acc["design"] == design) & (acc["family"] == family)].sort_values("level")
    if g.empty:
        return ""
    pts, name = f"{100 * margin:g} point{'' if 100 * margin == 1 else 's'}", "IMP" if family == "imp" else family
    lower = g[g["verdict"] == "lower"]
    lost = (f"; it is detectably lower (Holm) from {stats.pct(lower['density'].iloc[0])} density on"
            if not lower.empty else "; no level is detectably lower (Holm)")
    kept = _run_length(g["p_ni_holm"] < inference.ALPHA) if "p_ni_holm" in g else 0
    if kept:
        return (f"{name} keeps its dense model's accuracy down to {stats.pct(g['density'].iloc[kept - 1])} density "
                f"(non-inferior at a {pts} margin: one-sided paired t-test, Holm){lost}")
    near = _run_length(g["mean"] >= -margin)
    estimate = (f"; its mean stays within {pts} of it down to {stats.pct(g['density'].iloc[near - 1])} density "
                f"(a point estimate, not a test)" if near else "")
    seeds = int(g["n"].max())
    if seeds < 2:  # nothing can be tested, so neither "kept" nor "not lower" is said
        return f"{name}'s accuracy: one seed, so no test{estimate}"
    return (f"{name}'s accuracy: non-inferiority at a {pts} margin is shown at no pruned level with {seeds} "
            f"seeds{estimate}{lost}")


def _run_length(flags: pd.Series) -> int:
    """How many leading entries of `flags` are true."""
    n = 0
    for f in flags:
        if not f:
            break
        n += 1
    return n


STATEMENTS = {
    "accuracy falls": ("Accuracy falls with pruning", "accuracy minus the same seed's dense accuracy", "lower",
                       100.0, " points"),
    "cam smaller": ("Pruned Grad-CAM maps focus on a smaller part", "area holding half the Grad-CAM mass minus "
                    "the dense model's", "lower", 1.0, ""),
    "lrp smaller": ("Pruned LRP maps focus on a smaller part", "area holding half the LRP mass minus the dense "
                    "model's", "lower", 1.0, ""),
    "function changes": ("Pruning changes the function beyond another data order", "top-1 agreement with dense "
                         "minus the same seed's same-initialisation copy's", "lower", 100.0, " points"),
    "cam drifts": ("Pruned Grad-CAM maps drift beyond another data order", "Grad-CAM Spearman to dense minus the "
                   "same seed's same-initialisation floor", "lower", 1.0, ""),
    "lrp drifts": ("Pruned LRP maps drift beyond another data order", "LRP Spearman to dense minus the same "
                   "seed's same-initialisation floor", "lower", 1.0, ""),
    "cam drifts, same predictions": ("Grad-CAM maps drift where the decision did not", "Grad-CAM Spearman to "
                                     "dense over the probe images both predict alike, minus the same seed's "
                                     "same-initialisation copy's", "lower", 1.0, ""),
    "lrp drifts, same predictions": ("LRP maps drift where the decision did not", "LRP Spearman to dense over "
                                     "the probe images both predict alike, minus the same seed's "
                                     "same-initialisation copy's", "lower", 1.0, ""),
    "concepts drift": ("Pruned networks' concepts drift beyond another data order", "top-k concept overlap with "
                       "dense minus the same seed's same-initialisation copy's", "lower", 1.0, ""),
    "cam different": ("Pruned Grad-CAM maps look at a different part than another seed's model", "Grad-CAM "
                      "Spearman to dense minus the dense seed-to-seed floor", "lower", 1.0, ""),
    "lrp different": ("Pruned LRP maps look at a different part than another seed's model", "LRP Spearman to "
                      "dense minus the dense seed-to-seed floor", "lower", 1.0, ""),
    "concepts different": ("Pruned networks rely on different concepts", "top-k concept overlap with dense minus "
                           "the same backbone's refit overlap", "lower", 1.0, ""),
}


def _signed(x: float) -> str:
    """A signed number to 2 significant digits, but never in exponent form above 100 (-100, not -1e+02);
    float round-off around 0 (3.7e-17) is printed as 0."""
    out = f"{0.0 if abs(x) < 1e-12 else x:+.2g}"
    return f"{x:+.0f}" if "e+" in out else out


def sentences(name: str, t: pd.DataFrame) -> list[str]:
    """Per method (and design, where the rows hold several): where the claim holds (the corrected test in
    its direction), where it is contradicted or equivalent to no change, and where it is inconclusive; then
    one line for the claim overall."""
    title, what, direction, scale, unit = STATEMENTS[name]
    t = t if "series" in t else t.assign(series=t["family"])
    out = []
    for fam, g in t.sort_values(["series", "level"]).groupby("series", sort=True):
        parts = []
        for v in ("lower", "higher", "equivalent", "inconclusive", "no CI"):
            hit = g[g["verdict"] == v]
            if hit.empty:
                continue
            where = ", ".join(f"{stats.pct(r['density'])} ({_signed(r['mean'] * scale)}{unit}"
                              + (f" [{_signed(r['lo'] * scale)}, {_signed(r['hi'] * scale)}]"
                                 if np.isfinite(r["lo"]) else "")
                              + ")" for _, r in hit.iterrows())
            word = {"lower": "lower", "higher": "higher", "equivalent": "no change (TOST)",
                    "inconclusive": f"inconclusive with {int(hit['n'].max())} seeds",
                    "no CI": "one seed, so no test,"}[v]
            parts.append(f"{word} at {where}")
        out.append(f"{fam}: " + "; ".join(parts) + ".")
    holds = t[t["verdict"] == direction]
    against = t[(t["verdict"] != direction) & t["verdict"].isin(["lower", "higher", "equivalent"])]
    sparsest = t.loc[t.groupby("series")["level"].idxmax()]
    at_last = int((sparsest["verdict"] == direction).sum())
    whom = "methods" if t["design"].nunique() <= 1 else "methods and designs"
    out.insert(0, f"{title}: {what}, {len(t)} comparisons in one Holm family (alpha {inference.ALPHA}). "
                  f"The claim holds at {len(holds)} of them and is contradicted (the opposite direction, or no "
                  f"change within the margin) at {len(against)}; at each one's sparsest level it holds for "
                  f"{at_last} of {len(sparsest)} {whom}. The rest are inconclusive.")
    return out


__all__ = ["STATEMENTS", "all_claims", "knee_sentence", "sentences", "test"]
