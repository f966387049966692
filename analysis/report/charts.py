"""The report's charts (Altair): curves against density with intervals and noise floors, paired
differences against IMP, Pareto fronts per density band. Charts get only the aggregated columns they
draw, so a page stays small at any number of trials."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from analysis import colors, inference, stats
from analysis.axes import density_band, density_x
from analysis.front import pareto_front


def by_series(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with `family` made unique per design for drawing ('imp [prune.rewind_step=25it]'), so a
    line never joins points of two designs."""
    return summary.assign(family=stats.series(summary))


def _domain(values: list[pd.Series], bounds: tuple[float, float] | None = None) -> list[float]:
    """A y-domain zoomed to the data (5% padding), inside the metric's range when it has one."""
    v = pd.concat([x.astype(float) for x in values]).dropna()
    if v.empty:
        return [0.0, 1.0]
    lo, hi = float(v.min()), float(v.max())
    pad = max(hi - lo, 1e-3) * 0.05
    lo, hi = lo - pad, hi + pad
    if bounds is not None:
        lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
    return [lo, hi]


def _floor_layers(floor: pd.Series | None) -> list[alt.Chart]:
    """The floor as a grey band (its lowest to highest seed pair, or its interval) and a dashed line."""
    if floor is None:
        return []
    f = pd.DataFrame({"lo": [floor["lo"]], "hi": [floor["hi"]], "floor": [floor["floor"]]})
    return [alt.Chart(f).mark_rect(color="#999", opacity=0.22).encode(y="lo:Q", y2="hi:Q"),
            alt.Chart(f).mark_rule(color="#555", strokeDash=[5, 3]).encode(y="floor:Q")]


def curve(summary: pd.DataFrame, metric: str, title: str, dense_band: bool = False,
          floor: pd.Series | None = None, keep: list[str] | None = None, subtitle: str = "",
          palette: pd.Series | None = None) -> alt.Chart:
    """Mean of `metric` vs density per method, its 95% interval (inside the metric's range) as a band; the
    y-axis zoomed to the data. `dense_band`: the dense models' interval in grey; `floor`: a noise floor as a
    grey band with a dashed line (floors.floors); `keep`: only these series set the y-axis (the others are
    clipped at its edge, named in `subtitle`). `palette`: every series of the figure this chart sits in
    (default: all of `summary`'s, measured or not), so that panels side by side share one colour domain."""
    # Vega-Lite merges the colour scales of concatenated panels: the union of their domains, with the
    # range of one of them. Panels whose domains differ (a metric missing for a method, a zoomed panel)
    # would then paint a method in another's colour; one domain for the whole figure avoids it.
    palette = summary["family"] if palette is None else palette
    cols = ["family", "density", "level", "seeds", metric, f"{metric}_lo", f"{metric}_hi"]
    d = summary[cols].dropna(subset=[metric]).copy()
    d["band_of"] = d["family"]  # the bands' fill field (colors.fill)
    zoom = d if keep is None else d[d["family"].isin(keep)]
    dom = _domain([zoom[metric], zoom[f"{metric}_lo"], zoom[f"{metric}_hi"]]
                  + ([pd.Series([floor["lo"], floor["hi"]])] if floor is not None else []),
                  inference.RANGES.get(metric))
    color = colors.encoding(palette)
    base = alt.Chart(d).encode(x=density_x(d["density"]))
    band = base.mark_area(opacity=0.15, clip=True).encode(y=alt.Y(f"{metric}_lo:Q", scale=alt.Scale(domain=dom)),
                                                          y2=f"{metric}_hi:Q", fill=colors.fill(palette))
    line = base.mark_line(point=True, clip=True).encode(
        y=alt.Y(f"{metric}:Q", title=title, scale=alt.Scale(domain=dom, zero=False)), color=color,
        strokeDash=colors.dash(palette),
        tooltip=["family", "level", alt.Tooltip("density:Q", format=".4f"), alt.Tooltip(f"{metric}:Q", format=".4f"),
                 alt.Tooltip(f"{metric}_lo:Q", format=".4f"), alt.Tooltip(f"{metric}_hi:Q", format=".4f"), "seeds"])
    layers = [band, line]
    if dense_band:
        dense = d[d["level"] == 0]
        lo, hi = dense[f"{metric}_lo"].min(), dense[f"{metric}_hi"].max()
        if np.isfinite(lo) and np.isfinite(hi):
            ref = pd.DataFrame({"lo": [lo], "hi": [hi]})
            layers.insert(0, alt.Chart(ref).mark_rect(color="#999", opacity=0.25).encode(y="lo:Q", y2="hi:Q"))
    layers = _floor_layers(floor) + layers
    head = alt.TitleParams(title, subtitle=subtitle) if subtitle else title
    # the bands' fill scale and legend apart from the lines' (whose points fill with their colour)
    return alt.layer(*layers).resolve_scale(fill="independent").resolve_legend(fill="independent").properties(
        width=300, height=220, title=head)


def lth_curves(shown: pd.DataFrame) -> alt.HConcatChart:
    """Accuracy vs density twice: every method, and zoomed to the methods that stay within 15 points of
    dense (a method that collapses to chance would squash the others into a line)."""
    dense = shown.loc[shown["level"] == 0, "test_acc"].mean()
    worst = shown.groupby("family")["test_acc"].min()
    near = sorted(worst[worst >= dense - 0.15].index)
    off = sorted(set(worst.index) - set(near))
    charts = [curve(shown, "test_acc", "test accuracy (every method)", dense_band=True)]
    if off and near:
        charts.append(curve(shown[shown["family"].isin(near)], "test_acc", "test accuracy, zoomed",
                            dense_band=True, subtitle="left out (more than 15 points below dense): " + ", ".join(off),
                            palette=shown["family"]))
    return alt.hconcat(*charts)


def _diff_panel(diffs: pd.DataFrame, metric: str, scale: float, zoom_to: float | None
                ) -> tuple[pd.DataFrame, list[str]]:
    """The rows one difference panel draws (in drawn units) and the series it leaves out as off scale:
    those whose intervals reach beyond +-zoom_to, unless that would leave nothing."""
    cols = ["family", "density", "level", "pairs", f"d_{metric}", f"d_{metric}_lo", f"d_{metric}_hi",
            f"{metric}_clipped", f"{metric}_verdict"]
    d = diffs[cols].dropna(subset=[f"d_{metric}"]).copy()
    for c in (f"d_{metric}", f"d_{metric}_lo", f"d_{metric}_hi"):
        d[c] = d[c] * scale
    if zoom_to is None:
        return d, []
    reach = d.groupby("family")[[f"d_{metric}", f"d_{metric}_lo", f"d_{metric}_hi"]].agg(
        lambda v: float(np.abs(v).max()))  # NaN-skipping: a single pair has no interval
    far = sorted(reach[(reach > zoom_to).any(axis=1)].index)
    if not far or len(far) == d["family"].nunique():
        return d, []
    return d, far


def diff_panels(diffs: pd.DataFrame, panels: list[tuple[str, str, float, float | None]]) -> alt.HConcatChart:
    """Difference panels side by side, (metric, title, scale, zoom_to) each, with one colour domain: the
    series drawn in at least one of them (so no legend entry lacks a mark, and no panel shifts colours)."""
    drawn = set()
    for metric, _, scale, zoom_to in panels:
        d, far = _diff_panel(diffs, metric, scale, zoom_to)
        drawn |= set(d["family"]) - set(far)
    palette = pd.Series(sorted(drawn or set(diffs["family"])))
    return alt.hconcat(*[diff_chart(diffs, m, t, sc, z, palette) for m, t, sc, z in panels])


def diff_chart(diffs: pd.DataFrame, metric: str, title: str, scale: float = 1.0, zoom_to: float | None = None,
               palette: pd.Series | None = None) -> alt.Chart:
    """Paired difference (method - IMP) vs density with 95% CI bars, and the zero line; the y-axis zoomed to
    the data. `zoom_to`: series whose intervals reach beyond +-zoom_to (in the drawn units) are left out and
    named in the subtitle, so a collapsing control does not hide 1-point effects. An interval clipped at
    the range a difference can take ends in a triangle. `palette`: the series of the whole figure (see
    `diff_panels`; default: every series of `diffs`)."""
    d, far = _diff_panel(diffs, metric, scale, zoom_to)
    subtitle = ""
    if far:
        worst = d[d["family"].isin(far)].groupby("family")[f"d_{metric}"].min()
        subtitle = "off scale: " + ", ".join(f"{f} (down to {worst[f]:+.3g})" for f in far)
        d = d[~d["family"].isin(far)]
    if d.empty:  # not measured in this sweep (e.g. concepts disabled)
        return alt.Chart(pd.DataFrame({"t": ["not measured in this sweep"]})).mark_text().encode(
            text="t:N").properties(width=300, height=220, title=title)
    fams = sorted(d["family"].unique())
    # methods side by side at each level: a small multiplicative offset on the log axis
    d["x"] = d["density"].astype(float) * d["family"].map(
        {f: 1.08 ** (i - (len(fams) - 1) / 2) for i, f in enumerate(fams)}).astype(float)
    dom = _domain([d[f"d_{metric}"], d[f"d_{metric}_lo"], d[f"d_{metric}_hi"], pd.Series([0.0])])
    color = colors.encoding(diffs["family"] if palette is None else palette)  # one domain a figure (`curve`)
    base = alt.Chart(d).encode(x=density_x(d["density"], "x"), color=color)
    bars = base.mark_errorbar(ticks=True, clip=True).encode(
        y=alt.Y(f"d_{metric}_lo:Q", title=title, scale=alt.Scale(domain=dom)), y2=f"d_{metric}_hi:Q")
    pts = base.mark_point(filled=True, size=50, clip=True).encode(
        y=f"d_{metric}:Q", tooltip=["family", "level", "pairs", alt.Tooltip(f"d_{metric}:Q", format=".3f"),
                                    alt.Tooltip(f"d_{metric}_lo:Q", format=".3f"),
                                    alt.Tooltip(f"d_{metric}_hi:Q", format=".3f"), f"{metric}_verdict"])
    clipped = base.mark_point(shape="triangle-down", size=60, filled=True, clip=True).encode(
        y=f"d_{metric}_lo:Q").transform_filter(f"datum['{metric}_clipped']")
    zero = alt.Chart(pd.DataFrame({"z": [0.0]})).mark_rule(color="black", strokeDash=[4, 3]).encode(y="z:Q")
    head = alt.TitleParams(title, subtitle=subtitle) if subtitle else title
    return alt.layer(zero, bars, pts, clipped).properties(width=300, height=220, title=head)


def pareto_bands(rows: pd.DataFrame, fid: str = "cam_spearman") -> alt.FacetChart:
    """Accuracy vs Grad-CAM fidelity per density band (facets): fronts never mix densities."""
    ok = stats.with_design(rows[(rows["status"] == "ok") & (rows["level"] > 0)])
    ok = ok.assign(band=density_band(ok["density"], ok["level"]))
    parts = []
    for _, g in ok.groupby("band"):
        front = pareto_front(g, "test_acc", fid, by=None)
        keys = set(zip(front["run_id"], front["level"], strict=True))
        parts.append(g.assign(on_front=[k in keys for k in zip(g["run_id"], g["level"], strict=True)]))
    d = pd.concat(parts)[["band", "family", "seed", "level", "density", "test_acc", fid, "on_front"]]
    order = sorted(d["band"].unique(), key=lambda b: -float(b.split("-")[1]))
    base = alt.Chart(d).encode(x=alt.X(f"{fid}:Q", title=stats.METRICS[fid], scale=alt.Scale(zero=False)),
                               y=alt.Y("test_acc:Q", title="test accuracy", scale=alt.Scale(zero=False)))
    pts = base.mark_point(filled=True, size=45, opacity=0.8).encode(
        color=colors.encoding(d["family"]),
        tooltip=["family", "seed", "level", alt.Tooltip("density:Q", format=".4f"),
                 alt.Tooltip("test_acc:Q", format=".4f"), alt.Tooltip(f"{fid}:Q", format=".3f")])
    rings = base.mark_point(size=200, color="black").transform_filter("datum.on_front")
    line = base.mark_line(color="black", strokeWidth=1, interpolate="step-after").transform_filter(
        "datum.on_front")
    return alt.layer(line, rings, pts, data=d).properties(width=230, height=190).facet(
        facet=alt.Facet("band:N", sort=order, title="density band (fronts ringed; one front per band)"), columns=4)
