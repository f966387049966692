"""Instability analysis in the report: the error barrier against the rewind point and against density.

Frankle et al. (2020) call a network stable when the barrier is below 2% test error (their threshold,
"within the noise"); IMP found matching tickets exactly from the rewind points that were stable. So
the question a user asks of these charts is: from which rewind step k on is every level stable?

"Stable" is a claim, so it is tested (`tests`): per (rewind point, level), a one-sided t-test of the
seeds' barriers against the 2% threshold, in both directions (below: stable; above: unstable),
Holm-adjusted over every barrier test of the report. "k is stable at every level" is a conjunction, so it
is an intersection-union test (Berger 1982): it holds when every level's own one-sided test passes at
alpha, with no correction (a conjunction of tests at alpha has size at most alpha). A mean under 2% that
no test supports is said as a point estimate.
"""

from __future__ import annotations

import math

import altair as alt
import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis import inference, stats
from analysis.axes import density_x

STABLE = 0.02  # Frankle et al. 2020: a barrier within 2 points of error counts as linearly connected


def _labels(d: pd.DataFrame) -> list[str]:
    """The family, plus what sets its design apart other than the rewind point (the charts' own axis),
    so two designs sharing a rewind point are never pooled."""
    return stats.series(d, ignore=("prune.rewind_step",))


def from_levels(level_summary: pd.DataFrame) -> pd.DataFrame:
    """Per (family, rewind point, level) within one design: the mean barrier with its 95% CI over seeds,
    taken from the report's level summary (stats.level_summary), which already holds them."""
    d = level_summary.dropna(subset=["instability_barrier"])
    return pd.DataFrame({
        "family": _labels(d), "rewind_spec": d["rewind_spec"], "rewind_step": d["rewind_step"].astype(int),
        "level": d["level"].astype(int), "density": d["density"], "barrier": d["instability_barrier"],
        "lo": d["instability_barrier_lo"], "hi": d["instability_barrier_hi"], "seeds": d["seeds"],
    }).reset_index(drop=True)


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """`from_levels` of the rows' level summary."""
    return from_levels(stats.level_summary(rows))


def paths(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean test error at each interpolation point, per (family, rewind point, level) within one design."""
    d = stats.with_design(rows[(rows["status"] == "ok") & rows["instability_errors"].notna()])
    recs = []
    for fam, spec, level, errs in zip(_labels(d), d["rewind_spec"], d["level"], d["instability_errors"],
                                      strict=True):
        errs = list(errs)
        recs += [{"family": fam, "rewind_spec": spec, "level": int(level), "alpha": i / (len(errs) - 1),
                  "error": e} for i, e in enumerate(errs)]
    if not recs:
        return pd.DataFrame(recs)
    return pd.DataFrame(recs).groupby(["family", "rewind_spec", "level", "alpha"], as_index=False)["error"].mean()


def _spec_order(s: pd.DataFrame) -> list[str]:
    return [spec for _, spec in sorted(set(zip(s["rewind_step"], s["rewind_spec"], strict=True)))]


def charts(s: pd.DataFrame, p: pd.DataFrame) -> alt.HConcatChart:
    """Barrier vs density (one line per rewind point), barrier vs rewind point (one line per level), and
    the mean error along the path at the sparsest level."""
    specs = _spec_order(s)
    s = s.assign(lo=s["lo"].fillna(s["barrier"]), hi=s["hi"].fillna(s["barrier"]),
                 level_label=[f"L{lvl} ({stats.pct(d)})" for lvl, d in zip(s["level"], s["density"], strict=True)])
    rule = alt.Chart(pd.DataFrame({"y": [STABLE]})).mark_rule(color="#999", strokeDash=[4, 3]).encode(y="y:Q")
    y = alt.Y("barrier:Q", title="error barrier (test error)")
    tip = ["family", "rewind_spec", "level", alt.Tooltip("density:Q", format=".4f"),
           alt.Tooltip("barrier:Q", format=".4f"), alt.Tooltip("lo:Q", format=".4f"), alt.Tooltip("hi:Q", format=".4f"),
           "seeds"]
    color_k = alt.Color("rewind_spec:N", sort=specs, title="rewind point k")
    by_density = alt.Chart(s).encode(x=density_x(s["density"]), color=color_k, detail="family:N")
    a = alt.layer(rule, by_density.mark_errorbar().encode(y=alt.Y("lo:Q", title=""), y2="hi:Q"),
                  by_density.mark_line(point=True).encode(y=y, tooltip=tip)).properties(
        width=300, height=220, title="barrier vs density")
    levels = [lab for _, lab in sorted(set(zip(s["level"], s["level_label"], strict=True)))]
    by_k = alt.Chart(s).encode(x=alt.X("rewind_spec:N", sort=specs, title="rewind point k"),
                               color=alt.Color("level_label:N", sort=levels, title="level (density)",
                                               scale=alt.Scale(scheme="viridis")), detail="family:N")
    b = alt.layer(rule, by_k.mark_errorbar().encode(y=alt.Y("lo:Q", title=""), y2="hi:Q"),
                  by_k.mark_line(point=True).encode(y=y, tooltip=tip)).properties(
        width=300, height=220, title="barrier vs rewind point")
    sparsest = p[p["level"] == p["level"].max()]
    c = alt.Chart(sparsest).mark_line(point=True).encode(
        x=alt.X("alpha:Q", title="interpolation α (copy 1 → copy 2)"),
        y=alt.Y("error:Q", title="test error", scale=alt.Scale(zero=False)),
        color=alt.Color("rewind_spec:N", sort=specs, title="rewind point k"), detail="family:N",
        tooltip=["family", "rewind_spec", alt.Tooltip("alpha:Q", format=".2f"), alt.Tooltip("error:Q", format=".4f")],
    ).properties(width=300, height=220, title=f"error along the path, level {int(p['level'].max())}")
    return alt.hconcat(a, b, c).resolve_scale(color="independent").resolve_legend(color="independent")


def _one_sided(b: np.ndarray, alpha: float) -> tuple[float, float, float]:
    """(p that the barrier is below STABLE, p that it is above, the one-sided upper 1 - alpha bound of the
    mean), one-sided t-tests over seeds; nan with fewer than 2 seeds. p_below < alpha exactly when the
    bound is under STABLE, so the report quotes the bound its test uses (the charts' two-sided logit
    intervals are wider). Seeds that all give the same barrier carry no sampling noise: p is 0 or 1."""
    b = b[np.isfinite(b)]
    if len(b) < 2:
        return math.nan, math.nan, math.nan
    if np.ptp(b) == 0:
        return float(b[0] >= STABLE), float(b[0] <= STABLE), float(b[0])
    upper = b.mean() + sps.t.ppf(1 - alpha, len(b) - 1) * b.std(ddof=1) / math.sqrt(len(b))
    return (float(sps.ttest_1samp(b, STABLE, alternative="less").pvalue),
            float(sps.ttest_1samp(b, STABLE, alternative="greater").pvalue), float(min(upper, 1.0)))


def tests(rows: pd.DataFrame, alpha: float = inference.ALPHA) -> pd.DataFrame:
    """Per (family, rewind point, level) within one design: the seeds' barriers against the 2% threshold.
    Columns: n, mean, upper (its one-sided 1 - alpha bound), p_below, p_above (one-sided), their Holm
    adjustments over the whole table (one family: every barrier the report states), and verdict:
    'stable' (Holm p_below < alpha), 'unstable' (Holm p_above < alpha), 'inconclusive', or 'one seed'.
    `below` keeps the unadjusted p_below < alpha, which the intersection-union test of a whole rewind
    point uses (`stable_points`)."""
    d = stats.with_design(rows[(rows["status"] == "ok") & rows["instability_barrier"].notna()])
    if d.empty:
        return pd.DataFrame()
    d = d.assign(series=_labels(d))
    recs = []
    for (fam, spec, level), g in d.groupby(["series", "rewind_spec", "level"], sort=True):
        b = g["instability_barrier"].astype(float).to_numpy()
        below, above, upper = _one_sided(b, alpha)
        recs.append({"family": fam, "rewind_spec": spec, "rewind_step": int(g["rewind_step"].iloc[0]),
                     "level": int(level), "density": float(g["density"].mean()), "n": int(np.isfinite(b).sum()),
                     "mean": float(np.nanmean(b)), "upper": upper, "p_below": below, "p_above": above})
    t = pd.DataFrame(recs)
    t["p_below_holm"], t["p_above_holm"] = inference.adjust(t["p_below"]), inference.adjust(t["p_above"])
    t["below"] = t["p_below"] < alpha
    t["verdict"] = ["one seed" if not np.isfinite(pb) else "stable" if pb < alpha else
                    "unstable" if pa < alpha else "inconclusive"
                    for pb, pa in zip(t["p_below_holm"], t["p_above_holm"], strict=True)]
    return t.sort_values(["family", "rewind_step", "level"]).reset_index(drop=True)


def _points_where(g: pd.DataFrame, ok: pd.Series) -> list[str]:
    """The rewind points of one family's table `g` at which `ok` holds at every level, in rewind order."""
    return [spec for spec in _spec_order(g) if ok[g["rewind_spec"] == spec].all()]


def stable_points(t: pd.DataFrame) -> dict[str, list[str]]:
    """Per family, the rewind points stable at every level by the intersection-union test (every level's
    one-sided p_below < alpha), in rewind order."""
    return {fam: _points_where(g, g["below"]) for fam, g in t.groupby("family")}


def _mean_stable(g: pd.DataFrame) -> list[str]:
    """The rewind points of one family whose mean barrier is below the threshold at every level (a point
    estimate)."""
    return _points_where(g, g["barrier"] < STABLE)


def _levels(h: pd.DataFrame) -> str:
    return ", ".join(stats.pct(x) for x in h["density"])


def sentences(s: pd.DataFrame, t: pd.DataFrame) -> list[str]:
    """Per family and rewind point: at how many levels the barrier is detectably below (or above) 2% after
    Holm, where it is inconclusive, and its largest mean; then the rewind points stable at every level by the
    intersection-union test, or, when none is, the point estimate said as one."""
    out = []
    stable_by_test = stable_points(t)
    for fam, g in s.groupby("family"):
        tf = t[t["family"] == fam]
        for spec in _spec_order(g):
            v = tf[tf["rewind_spec"] == spec]
            worst = v.loc[v["mean"].idxmax()]
            parts = [f"detectably below {STABLE:.0%} at {int((v['verdict'] == 'stable').sum())} of {len(v)} levels"]
            for verdict, what in (("unstable", "detectably above"), ("inconclusive", f"inconclusive with "
                                                                     f"{int(v['n'].min()) if len(v) else 0} seeds")):
                hit = v[v["verdict"] == verdict]
                if len(hit):
                    parts.append(f"{what} at {_levels(hit)}")
            out.append(f"{fam}, rewind to {spec}: barrier " + "; ".join(parts) + f" (one-sided t-tests, Holm over "
                       f"the {len(t)} barrier tests); largest mean {worst['mean']:.3f} at "
                       f"{stats.pct(worst['density'])} density"
                       + (f" (one-sided {1 - inference.ALPHA:.0%} upper bound {worst['upper']:.3f})"
                          if np.isfinite(worst["upper"]) else "") + ".")
        out.append(_verdict_line(fam, stable_by_test.get(fam, []), _mean_stable(g)))
    return out


def _verdict_line(fam: str, by_test: list[str], by_mean: list[str]) -> str:
    if by_test:
        return (f"{fam}: stable at every level (every level's barrier below {STABLE:.0%} by its one-sided test at "
                f"alpha {inference.ALPHA}; an intersection-union test) for rewind points {', '.join(by_test)}; "
                f"the earliest is {by_test[0]}.")
    estimate = (f"; the mean barrier is below {STABLE:.0%} at every level for {', '.join(by_mean)} (a point "
                "estimate, not a test)" if by_mean else "")
    return f"{fam}: no rewind point tried is shown stable at every level{estimate}."


def summary_of(s: pd.DataFrame, t: pd.DataFrame) -> str:
    """The headline sentence ('' when no row has a barrier): per family, the rewind points stable at every
    level by test, or the point estimate said as one, and the largest mean barrier."""
    if s.empty or t.empty:
        return ""
    by_test = stable_points(t)
    parts = []
    for fam, g in s.groupby("family"):
        worst = g.loc[g["barrier"].idxmax()]
        parts.append(_verdict_line(fam, by_test.get(fam, []), _mean_stable(g)).rstrip(".")
                     + f" (largest mean {worst['barrier']:.3f}, rewind {worst['rewind_spec']} at "
                       f"{stats.pct(worst['density'])} density)")
    return "Instability analysis: " + "; ".join(parts) + "."
