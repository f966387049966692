"""Instability analysis in the report: the error barrier against the rewind point and against density.

Frankle et al. (2020) call a network stable when the barrier is below 2% test error (their threshold,
"within the noise"); IMP found matching tickets exactly from the rewind points that were stable. So
the question a user asks of these charts is: from which rewind step k on is every level stable?
"""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from analysis import stats
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


def _stable(g: pd.DataFrame) -> list[str]:
    """The rewind points of one family whose mean barrier is below the threshold at every level."""
    return [spec for spec in _spec_order(g) if (g.loc[g["rewind_spec"] == spec, "barrier"] < STABLE).all()]


def sentences(s: pd.DataFrame) -> list[str]:
    """Per family and rewind point: at how many levels the barrier stays under the 2% threshold, and the
    earliest rewind point stable at every level."""
    out = []
    for fam, g in s.groupby("family"):
        for spec in _spec_order(g):
            h = g[g["rewind_spec"] == spec].sort_values("level")
            worst = h.loc[h["barrier"].idxmax()]
            stable = int((h["barrier"] < STABLE).sum())
            out.append(f"{fam}, rewind to {spec}: mean barrier below {STABLE:.0%} at {stable} "
                       f"of {len(h)} levels; largest {worst['barrier']:.3f} at {stats.pct(worst['density'])} density"
                       + (f" (95% CI {worst['lo']:.3f} to {worst['hi']:.3f})" if np.isfinite(worst["lo"]) else "")
                       + ".")
        stable = _stable(g)
        out.append(f"{fam}: the earliest rewind point stable at every level is {stable[0]}." if stable else
                   f"{fam}: no rewind point tried is stable at every level.")
    return out


def summary_of(level_summary: pd.DataFrame) -> str:
    """The headline sentence from the report's level summary ('' when no row has a barrier)."""
    parts = []
    for fam, g in from_levels(level_summary).groupby("family"):
        stable = _stable(g)
        worst = g.loc[g["barrier"].idxmax()]
        parts.append(f"{fam}: the mean error barrier stays below {STABLE:.0%} at every level for rewind points "
                     f"{', '.join(stable)}" if stable else f"{fam}: no rewind point tried keeps the mean error "
                     f"barrier below {STABLE:.0%} at every level")
        parts[-1] += (f" (largest {worst['barrier']:.3f}, rewind {worst['rewind_spec']} at "
                      f"{stats.pct(worst['density'])} density)")
    return ("Instability analysis: " + "; ".join(parts) + ".") if parts else ""
