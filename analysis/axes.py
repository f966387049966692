"""Axes shared by the report's charts."""

from __future__ import annotations

import altair as alt
import pandas as pd

# Edges of the density bands (lo, hi] that compare levels of schedules whose densities differ.
DENSITY_BINS = (1.0, 0.5, 0.25, 0.1, 0.05, 0.025, 0.01, 0.005, 0.0025, 0.001, 0.0)


def _bands(density: pd.Series) -> pd.Series:
    return pd.cut(density, bins=sorted(DENSITY_BINS), right=True)


def density_band(density: pd.Series, level: pd.Series) -> pd.Series:
    """Density band labels ('0.025-0.05'), the dense level its own band ('dense')."""
    lab = _bands(density).map(lambda b: f"{b.left:.3g}-{b.right:.3g}").astype(str)
    return lab.where(level > 0, "dense")


def band_upper(density: pd.Series, level: pd.Series) -> pd.Series:
    """The upper edge of each row's band (the dense level 2.0), to sort bands dense first."""
    return _bands(density).map(lambda b: b.right).astype(float).where(level > 0, 2.0)


def density_x(densities: pd.Series, field: str = "density") -> alt.X:
    """Log density axis, dense on the left, ticks at the levels' own densities (a log axis's own minor
    ticks crowd and miss the sparsest level)."""
    levels = sorted({round(float(v), 4) for v in densities}, reverse=True)
    return alt.X(f"{field}:Q", title="density (fraction of weights kept)",
                 scale=alt.Scale(type="log", nice=False, domain=[levels[0] * 1.15, levels[-1] / 1.3]),  # dense first
                 axis=alt.Axis(values=levels, format=".2~%", grid=True))
