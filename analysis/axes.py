"""Axes shared by the report's charts."""

from __future__ import annotations

import altair as alt
import pandas as pd


def density_x(densities: pd.Series, field: str = "density") -> alt.X:
    """Log density axis, dense on the left, ticks at the levels' own densities (a log axis's own minor
    ticks crowd and miss the sparsest level)."""
    levels = sorted({round(float(v), 4) for v in densities}, reverse=True)
    return alt.X(f"{field}:Q", title="density (fraction of weights kept)",
                 scale=alt.Scale(type="log", nice=False, domain=[levels[0] * 1.15, levels[-1] / 1.3]),  # dense first
                 axis=alt.Axis(values=levels, format=".2~%", grid=True))
