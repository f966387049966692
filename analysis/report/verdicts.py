"""The verdicts at a glance: one grid per family of tests, methods down and densities across, each cell
coloured by its corrected verdict (higher / lower / no change / inconclusive) with the effect printed in
it. A reader sees where a claim holds before reading a sentence; the numbers stay in the tables below."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from analysis import claims, stats
from lthray import metrics

# Fixed colours so a verdict looks the same in every grid of every report; grey = nothing shown.
VERDICTS = {"lower": ("lower", "#e08214"), "higher": ("higher", "#2166ac"),
            "equivalent": ("no change (TOST)", "#7fbf7b"), "inconclusive": ("inconclusive", "#e0e0e0"),
            "no CI": ("one seed: no test", "#f7f7f7")}


def effect(x: float) -> str:
    """A cell's effect: 2 significant digits, never in exponent form (+0.00005, not +5e-05)."""
    if not np.isfinite(x):
        return ""
    out = claims._signed(x)
    return f"{x:+.5f}".rstrip("0") if "e-" in out else out


def cells(t: pd.DataFrame, mean: str, verdict: str, scale: float) -> pd.DataFrame:
    """The grid's cells of a test table (one row per series and level): row label, column label, the
    verdict's words and the effect as printed."""
    series = t["series"] if "series" in t else t["family"]
    order = t.sort_values("level")
    return pd.DataFrame({
        "series": series.to_numpy(),
        "density": [f"{stats.pct(d)} (L{lv})" for d, lv in zip(t["density"], t["level"], strict=True)],
        "verdict": [VERDICTS[v][0] for v in t[verdict]],
        "effect": [effect(m * scale) for m in t[mean]],
    }).assign(order=pd.Categorical(t["level"], sorted(order["level"].unique())).codes)


def grid(t: pd.DataFrame, title: str, mean: str = "mean", verdict: str = "verdict", scale: float = 1.0
         ) -> alt.LayerChart:
    """One family's grid (see module doc); `mean`, `verdict`: the table's columns; `scale` prints points."""
    d = cells(t, mean, verdict, scale)
    x_order = list(dict.fromkeys(d.sort_values("order")["density"]))
    words = [w for w, _ in VERDICTS.values()]
    base = alt.Chart(d).encode(x=alt.X("density:N", sort=x_order, title="density (level)",
                                       axis=alt.Axis(labelAngle=0)),
                               y=alt.Y("series:N", title=None))
    rect = base.mark_rect(stroke="white").encode(
        color=alt.Color("verdict:N", scale=alt.Scale(domain=words, range=[c for _, c in VERDICTS.values()]),
                        legend=alt.Legend(title="verdict (Holm; TOST)", orient="bottom")))
    text = base.mark_text(fontSize=11).encode(text="effect:N")
    width = max(160, 62 * d["density"].nunique())
    return alt.layer(rect, text).properties(title=title, width=width, height=22 * d["series"].nunique())


def claim_grids(tables: dict[str, pd.DataFrame]) -> alt.VConcatChart | None:
    """One grid per claim family (analysis.claims), stacked; None without claims."""
    charts = [grid(t, f"{claims.STATEMENTS[name][0]} ({claims.STATEMENTS[name][1]}"
                   + (", points)" if claims.STATEMENTS[name][3] == 100 else ")"), scale=claims.STATEMENTS[name][3])
              for name, t in tables.items()]
    return alt.vconcat(*charts).resolve_scale(color="shared") if charts else None


def versus_imp_grids(diffs: pd.DataFrame) -> alt.ConcatChart | None:
    """One grid per headline or guard metric (lthray.metrics) measured in `diffs`: each method against
    IMP, paired by seed, one Holm family per metric."""
    charts = []
    for m in metrics.all_metrics():
        if not m.role or f"d_{m.name}" not in diffs or not diffs[f"d_{m.name}"].notna().any():
            continue
        unit = ", points" if m.scale == 100 else ""
        charts.append(grid(diffs, f"{m.label}: method - IMP{unit}", f"d_{m.name}", f"{m.name}_verdict", m.scale))
    return alt.concat(*charts, columns=3).resolve_scale(color="shared") if charts else None
