"""One colour per method in every chart: declared with the method (lthray.methods, `Method.color`).

A chart's colour scale lists only the series it draws (no ghost legend entries) and maps each to its
method's colour, so a method looks the same in every figure whichever others a figure shows. Series of
one method that differ in a knob (g, lambda_fid, a design) share the colour and differ in dash.
"""

from __future__ import annotations

import hashlib

import altair as alt
import pandas as pd

from lthray.methods import METHODS

# Tableau 10: what a method without a declared colour draws from (by a hash of its name, so stable).
_FALLBACK = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
             "#17becf"]


def method_of(series: str) -> str:
    """The method name a series label starts with ('cam_guided (g=0.5) [prune.rate=0.9]' -> 'cam_guided')."""
    return series.split(" ", 1)[0]


def method_color(method: str) -> str:
    if method in METHODS and METHODS.get(method).color:
        return METHODS.get(method).color
    return _FALLBACK[int(hashlib.sha256(method.encode()).hexdigest(), 16) % len(_FALLBACK)]


def encoding(series: pd.Series, field: str = "family", title: str = "method") -> alt.Color:
    """The colour encoding of a chart drawing `series` (the values of `field`)."""
    domain = sorted(set(series))
    return alt.Color(f"{field}:N", title=title, scale=alt.Scale(domain=domain,
                                                                range=[method_color(method_of(s)) for s in domain]))


def fill(series: pd.Series, field: str = "band_of") -> alt.Fill:
    """The same colours on the fill channel of `field` (a copy of the series column), without a legend: for
    interval bands, so the legend shows the lines' full colours only. Vega-Lite merges the legends of
    channels that share a field, and one legend=None would then hide the lines' legend too: hence the copy."""
    domain = sorted(set(series))
    return alt.Fill(f"{field}:N", scale=alt.Scale(domain=domain, range=[method_color(method_of(s)) for s in domain]),
                    legend=None)


def dash(series: pd.Series, field: str = "family") -> alt.StrokeDash:
    """Solid for the first series of each method, dashed for its others (another g or design)."""
    domain = sorted(set(series))
    seen: dict[str, int] = {}
    patterns = []
    for s in domain:
        k = seen.get(method_of(s), 0)
        seen[method_of(s)] = k + 1
        patterns.append([1, 0] if k == 0 else [[6, 3], [2, 2], [8, 2, 2, 2]][(k - 1) % 3])
    # no legend=None here: Vega-Lite merges channels of one field into one legend, and a None would drop it
    return alt.StrokeDash(f"{field}:N", scale=alt.Scale(domain=domain, range=patterns))
