"""The study report: report.html (self-contained, offline, charts as inline SVG) and report.md (+ PNGs).

    python -m analysis.report [--results runs/NAME/results] [--out DIR]

It answers the study's questions with numbers, every sentence generated from the numbers beside it:
(a) the lottery-ticket curve, (b) Grad-CAM fidelity and faithfulness, (c) concept fidelity, each vs
density with 95% CIs over seeds; (d) every method vs IMP as paired differences (same design, seed and
level) with 95% CIs; (e) Pareto fronts per density band; (f) the Grad-CAM gallery and concept shift.
Charts get only the aggregated columns they draw, so the page stays small at any number of trials.
"""

from __future__ import annotations

import base64
import html
import json
import sys
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from analysis import claims, colors, floors, inference, instability, search, stats, tickets
from analysis.axes import density_band, density_x
from analysis.front import pareto_front
from analysis.gallery import concept_shift, gallery, median_seed
from analysis.load import AnalysisError, cli_inputs, sweep_meta
from lthray import mask_files


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


def _table_md(df: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return str(v).replace("|", "\\|")  # concept lists are '|'-separated

    head = "| " + " | ".join(df.columns) + " |\n|" + "---|" * len(df.columns) + "\n"
    return head + "".join("| " + " | ".join(cell(v) for v in r) + " |\n" for r in df.itertuples(index=False))


def _points(v: float) -> str:
    """An accuracy margin in points: '1 point', '0.5 points'."""
    return f"{100 * v:g} point" + ("" if round(100 * v, 9) == 1 else "s")


def _ci(m: float, lo: float, hi: float, scale: float = 100.0, digits: int = 1) -> str:
    if not np.isfinite(m):
        return "n/a"
    if not np.isfinite(lo):
        return f"{m * scale:.{digits}f}"
    return f"{m * scale:.{digits}f} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


class Report:
    """Sections of text, tables and charts, rendered to both HTML and Markdown."""

    def __init__(self, out: Path) -> None:
        self.out, self.html, self.md = out, [], []

    def heading(self, text: str, level: int = 2) -> None:
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")
        self.md.append(f"{'#' * level} {text}\n")

    def para(self, text: str) -> None:
        self.html.append(f"<p>{html.escape(text)}</p>")
        self.md.append(text + "\n")

    def bullets(self, items: list[str]) -> None:
        self.html.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
        self.md.append("".join(f"- {i}\n" for i in items))

    def table(self, df: pd.DataFrame) -> None:
        self.html.append(df.to_html(index=False, escape=True, border=0, classes="t"))
        self.md.append(_table_md(df))

    def chart(self, chart: alt.TopLevelMixin, name: str, alt_text: str) -> None:
        import vl_convert as vlc

        chart.save(self.out / f"{name}.png", scale_factor=2)
        svg = vlc.vegalite_to_svg(chart.to_dict())
        self.html.append(f'<figure aria-label="{html.escape(alt_text)}">{svg}</figure>')
        self.md.append(f"![{alt_text}]({name}.png)\n")

    def image(self, path: Path, alt_text: str) -> None:
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(f'<figure><img alt="{html.escape(alt_text)}" src="data:image/png;base64,{data}" '
                         'style="max-width:100%"></figure>')
        self.md.append(f"![{alt_text}]({path.name})\n")

    def write(self, title: str) -> None:
        css = ("body{font-family:sans-serif;max-width:1350px;margin:auto;padding:0 16px;color:#222}"
               "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:2px 8px;"
               "border-bottom:1px solid #ddd;text-align:left}figure{margin:8px 0;overflow-x:auto}")
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{css}</style></head><body><h1>{html.escape(title)}</h1>{''.join(self.html)}</body></html>")
        (self.out / "report.html").write_text(page)
        (self.out / "report.md").write_text(f"# {title}\n\n" + "\n".join(self.md))


def _design_text(rows: pd.DataFrame, margins: dict[str, float], tables: list[str]) -> list[str]:
    from lthray.config import from_flat

    c = from_flat(json.loads(rows["config_json"].iloc[0]))
    n_trials, seeds = rows["run_id"].nunique(), sorted(int(s) for s in rows["seed"].unique())
    methods = sorted(stats.with_design(rows)["family"].unique())
    shown = ", ".join(f"{stats.METRICS[m]} ±" + (_points(v) if m in ("test_acc", "pcbm_acc") else f"{v:g}")
                      for m, v in margins.items() if m in HEADLINE)
    return [
        f"{n_trials} trials: {len(methods)} method{'s' if len(methods) > 1 else ''} ({', '.join(methods)}) "
        f"x seeds {seeds}, paired by seed and level.",
        f"Data: {c.data.dataset}" + (f" (a fixed subset of {c.data.train_size} training images)"
                                     if c.data.train_size else " (all training images)")
        + f"; model {c.model.name}; {c.train.epochs} epochs per level at peak lr {c.train.lr}"
        + ("" if c.data.augment else ", no augmentation") + ".",
        f"Pruning: {c.prune.levels} levels removing {c.prune.rate_per_level:.0%} of the remaining weights each "
        f"({c.prune.scope} ranking); rewind: {', '.join(sorted(rows['rewind'].unique()))} to "
        + ", ".join(spec for _, spec in sorted(set(zip(rows["rewind_step"], rows["rewind_spec"], strict=True))))
        + ".",
        f"Explanations: Grad-CAM on {c.data.probe_size} fixed test images vs the dense model's maps; "
        f"faithfulness = {c.explain.faithfulness}; concept bank: {', '.join(sorted(rows['concept_bank'].unique()))}.",
        "Intervals: 95% t intervals over seeds, on a logit scale for bounded metrics (Fisher's z for correlations) "
        "so that none leaves the metric's range; differences: 95% t intervals of the per-seed differences.",
        "Tests: paired t-tests against IMP. A comparison family is one metric: every method against IMP at every "
        "density. p-values are Holm-adjusted within the family (Benjamini-Hochberg beside them); 'higher' or "
        "'lower' means Holm p < 0.05. 'Equivalent' needs the Holm-adjusted equivalence test (TOST) to pass at the "
        f"declared margin ({shown}; `--margin METRIC=VALUE` changes one); anything else is 'inconclusive with N "
        "seeds', with the difference that 80% power would need at the family's first Holm step.",
        "Every number comes from `per_seed.csv` (one row per trial and level) and the tables beside this report: "
        + ", ".join(f"`{t}`" for t in tables) + ".",
    ]


HEADLINE = ("test_acc", "cam_spearman", "cam_iou", "cam_faithfulness", "concept_topk_overlap",
            "concept_weight_spearman", "pcbm_acc", "cam_energy_inside", "cam_concentration", "lrp_spearman",
            "lrp_concentration")  # the metrics whose comparisons the findings count
PER_SEED = ["run_id", "method", "family", "guidance_weight", "lambda_fid", "seed", "level", "density", "status",
            "train_steps", *stats.METRICS, "empty_layers", "concept_refit_overlap", "concept_refit_spearman",
            "cam_sanity_spearman", "lrp_sanity_spearman", "object_area", "design"]


def per_seed_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per trial and level with every metric the report uses: every interval can be recomputed."""
    d = stats.with_design(rows)
    d = d.assign(empty_layers=[" ".join(v) if v is not None and len(v) else "" for v in d["empty_layers"]])
    return d[[c for c in PER_SEED if c in d.columns]].sort_values(["family", "seed", "level"])


def write_report(rows: pd.DataFrame, out: Path, margins: dict[str, float] | None = None) -> Path:
    """The report the sweep behind `rows` calls for: a search report for an Optuna search, else the
    study report (with the confirm section when the sweep confirms a search)."""
    meta = sweep_meta(rows.attrs.get("results"))
    if meta.get("search") == "optuna":
        return build_search(rows, out)
    return build(rows, out, masks_of(rows), confirm_of=meta.get("confirm_of"), margins=margins)


def build_search(rows: pd.DataFrame, out: Path) -> Path:
    """report.html / report.md of an Optuna search: its Pareto set at the target density, importances,
    metrics against g and lambda_fid (analysis.search)."""
    out.mkdir(parents=True, exist_ok=True)
    r = Report(out)
    name = rows["sweep"].iloc[0]
    search.search_section(r, rows, out, name)
    gallery_section(r, rows, out)
    r.write(f"lthray search: {name}")
    return out / "report.html"


def main_design(summary: pd.DataFrame) -> str:
    """The design with the most rows: where the floors drawn on the charts come from."""
    return str(summary["design"].value_counts().sort_index().idxmax())


def build(rows: pd.DataFrame, out: Path, masks: tickets.Masks | None = None, confirm_of: str | None = None,
          margins: dict[str, float] | None = None) -> Path:
    """Write report.html, report.md, their PNGs and the CSV tables behind them into `out`.
    `masks` (lthray.mask_files.read of the results folder) adds the ticket-overlap section; `confirm_of`
    (the search a confirm sweep re-runs) adds the confirm section; `margins` replace declared
    equivalence margins (inference.MARGINS) key by key."""
    out.mkdir(parents=True, exist_ok=True)
    margins = {**inference.MARGINS, **(margins or {})}
    summary, diffs = stats.level_summary(rows), stats.paired_differences(rows, margins=margins)
    fl = floors.floors(rows)
    per_seed_table(rows).to_csv(out / "per_seed.csv", index=False, float_format="%.5g")
    summary.to_csv(out / "summary.csv", index=False, float_format="%.5g")
    if not diffs.empty:
        diffs.drop(columns=[c for c in diffs.columns if c.startswith("pairs_")]).to_csv(
            out / "paired_differences.csv", index=False, float_format="%.5g")
    fl.to_csv(out / "noise_floors.csv", index=False, float_format="%.5g")
    banks = sorted(rows["concept_bank"].unique())
    random_bank = any(b.endswith("/random") for b in banks)
    title = f"lthray study: {rows['sweep'].iloc[0]}" + (
        " (RANDOM concept bank: concept results check the pipeline only)" if random_bank else "")
    r = Report(out)
    r.heading("Design")
    r.bullets(_design_text(rows, margins, ["summary.csv", "noise_floors.csv"]
                           + ([] if diffs.empty else ["paired_differences.csv"])))
    if summary["design"].nunique() > 1:
        r.para("Several designs are present; each is drawn as its own line and comparisons stay within one "
               "design. They differ in: " + "; ".join(sorted(stats.design_names(summary).values())) + ".")
    diverged = rows.loc[rows["status"] != "ok", "run_id"].nunique()
    if diverged:
        r.para(f"{diverged} trials diverged at some level; their diverged levels are left out of every mean.")
    empty = empty_layer_sentences(rows)
    if empty:
        r.para("Disconnected networks: these levels keep no weight at all in some layer (column empty_layers).")
        r.bullets(empty)
    if confirm_of:
        search.confirm_section(r, rows, out, confirm_of)

    design = main_design(summary)
    r.heading("Findings")
    tables = claims.all_claims(rows, fl, margins)
    barriers = instability.tests(rows)  # once: the headline and section (h) read the same tests
    r.bullets(findings(summary, diffs, fl, tables.get("accuracy falls"), margins["test_acc"], barriers))
    claims_section(r, tables)

    r.heading("(a) The lottery-ticket curve")
    acc_claim = tables.get("accuracy falls")
    knees = [(lab, claims.knee_sentence(acc_claim, d, margins["test_acc"]) if acc_claim is not None else "")
             for lab, d in imp_designs(summary)]
    r.para("Test accuracy vs density, mean and 95% interval over seeds; the grey band is the dense model's "
           "interval. " + " ".join(f"{lab}{k}." for lab, k in knees if k))
    shown = by_series(summary)
    r.chart(lth_curves(shown), "lth_curve", "accuracy vs density")
    collapse = summary[summary["collapsed"]]
    if not collapse.empty:
        r.para("Seeds that disagree wildly (some at chance accuracy, others well above it): a mean describes none "
               "of them, so here they are seed by seed.")
        r.bullets([f"{c['family']} at {stats.pct(c['density'])} density (level {c['level']}): {c['acc_by_seed']}."
                   for _, c in collapse.sort_values(["family", "level"]).iterrows()])
    r.heading("(b) Grad-CAM fidelity and faithfulness")
    r.para("Agreement with the same seed's dense maps; the grey band with a dashed line is the noise floor: how "
           "far two dense models of different seeds agree (lowest to highest seed pair, dashed: their mean). "
           "Faithfulness is of each model's own maps (ROAD or confidence drop) and has no floor.")
    r.chart(alt.hconcat(curve(shown, "cam_spearman", "Grad-CAM Spearman to dense",
                              floor=floors.floor_of(fl, design, "cam_spearman")),
                        curve(shown, "cam_iou", "Grad-CAM top-k IoU to dense",
                              floor=floors.floor_of(fl, design, "cam_iou")),
                        curve(shown, "cam_faithfulness", "Grad-CAM faithfulness (own maps)")),
            "cam_curves", "Grad-CAM fidelity vs density")
    floor_section(r, fl)
    localisation_section(r, rows, shown, fl, design)
    r.heading("(c) Concept fidelity")
    if summary["concept_topk_overlap"].notna().any():
        r.para("Agreement of each level's post-hoc concept bottleneck with the dense one's. Grey: the refit floor "
               "(the dense backbone's PCBM refitted with another fit seed on a bootstrap of the bank's images; "
               "95% interval over seeds); dashed line on the overlap chart: the seed-to-seed floor.")
        refit = floors.floor_of(fl, design, "concept_topk_overlap", "refit")
        r.chart(alt.hconcat(curve(shown, "concept_topk_overlap", "concept top-k overlap with dense", floor=refit),
                            curve(shown, "concept_weight_spearman", "concept weight Spearman to dense",
                                  floor=floors.floor_of(fl, design, "concept_weight_spearman", "refit")),
                            curve(shown, "pcbm_acc", "PCBM accuracy", dense_band=True)),
                "concept_curves", "concept fidelity vs density")
        dense_concepts(r, rows)
    else:
        r.para("Concepts were disabled in this sweep.")
    r.heading("(d) Each method against IMP, paired by seed and level")
    if diffs.empty:
        r.para("No IMP trial shares a design and seed with another method: no paired comparison is possible.")
    else:
        r.para("Mean paired difference with its 95% interval. A series whose intervals reach beyond the zoomed "
               "axis is left out of that panel and named under its title; a triangle marks an interval clipped at "
               "the range a difference can take.")
        r.chart(diff_panels(diffs, [("test_acc", "Δ accuracy vs IMP (points)", 100.0, 10.0),
                                    ("cam_spearman", "Δ Grad-CAM Spearman vs IMP", 1.0, 0.4),
                                    ("concept_topk_overlap", "Δ concept overlap vs IMP", 1.0, 0.4)]),
                "paired_differences", "paired differences against IMP")
        r.bullets([stats.sentence(rec) for _, rec in diffs.sort_values(["family", "level"]).iterrows()])
    r.heading("(e) Pareto fronts of accuracy vs Grad-CAM fidelity, per density band")
    r.chart(pareto_bands(rows), "pareto_bands", "Pareto fronts per density band")
    gallery_section(r, rows, out, "(f) ")
    ticket_section(r, rows, masks or {}, out)
    instability_section(r, rows, summary, barriers, out)
    r.write(title)
    return out / "report.html"


def empty_layer_sentences(rows: pd.DataFrame) -> list[str]:
    """One line per (method, level) whose masks leave some layer empty, naming the layers and seeds."""
    d = rows[rows["empty_layers"].map(lambda v: v is not None and len(v) > 0)]
    out = []
    for (method, level), g in stats.with_design(d).groupby(["family", "level"]):
        layers = sorted({name for v in g["empty_layers"] for name in v})
        out.append(f"{method} at {stats.pct(float(g['density'].mean()))} density (level {level}), seeds "
                   f"{sorted(int(x) for x in g['seed'])}: no weight kept in {', '.join(layers)}.")
    return out


def floor_section(r: Report, fl: pd.DataFrame) -> None:
    """The noise floors as a table: what every drift in this report is read against."""
    if fl.empty:
        r.para("No noise floor could be measured: the rows hold no level-0 reference maps or refits (written "
               "before lthray's schema 6), or there is one seed only. Drift is reported without a yardstick.")
        return
    t = fl.assign(what=[stats.METRICS.get(m, m) for m in fl["metric"]],
                  floor_kind=["dense seed vs dense seed" if k == "seed" else "PCBM refit (same backbone)"
                              for k in fl["kind"]])
    r.para("Noise floors (noise_floors.csv): seed-to-seed = mean over pairs of dense models of different seeds "
           "(lo/hi: the lowest and highest pair); refit = the same backbone's PCBM refitted (lo/hi: 95% interval "
           "over seeds).")
    r.table(t[["what", "floor_kind", "floor", "lo", "hi", "n"]].round(3))


def gallery_section(r: Report, rows: pd.DataFrame, out: Path, label: str = "") -> None:
    """The Grad-CAM gallery (gallery.png) and the concept shift (concept_shift.csv), both of the median seed
    for every method (paired): the one place both are computed, for the study and the search report."""
    r.heading(f"{label}Grad-CAM gallery and concept shift")
    seed, why = median_seed(rows)
    if seed is not None:
        r.para(f"Every method at seed {seed}, {why}, so the methods are compared on one seed (paired), not each "
               "on its best.")
    g = gallery(rows, out, seed=seed)
    if g is not None:
        r.image(g, "Grad-CAM gallery")
    shift = concept_shift(rows, seed=seed)
    if not shift.empty:
        shift.to_csv(out / "concept_shift.csv", index=False)
        r.table(shift[["method", "seed", "class", "density", "kept", "lost", "gained"]].round({"density": 4}))


def localisation_section(r: Report, rows: pd.DataFrame, shown: pd.DataFrame, fl: pd.DataFrame, design: str) -> None:
    """(b2) Where the maps lie against the object masks, per method and density, with the dense models'
    seed-to-seed band as the noise floor and the object's area as energy-inside's chance level."""
    if shown["cam_concentration"].isna().all():
        return
    r.heading("(b2) Where Grad-CAM looks: localisation and concentration")
    has_masks = shown["cam_energy_inside"].notna().any()
    area = rows["object_area"].dropna()
    r.para(("Energy inside: the share of each probe map's mass on the garment (pixels above the black "
            f"background); a map spread evenly scores the object's area, {area.mean():.1%} of the probe "
            "images (chance). Pointing: the share of maps whose peak lies on the garment. " if has_masks else
            "This dataset has no object masks: only concentration is measured. ")
           + "Concentration: the fraction of the image's area holding half the map's mass (0.5 = uniform; "
           "lower = focused on a part). Mean and 95% interval over seeds; the grey band is the dense models' "
           "interval over seeds, the seed-to-seed noise floor a pruned model's change must clear.")
    charts = [curve(shown, "cam_concentration", "area holding half the mass", dense_band=True)]
    if has_masks:
        chance = alt.Chart(pd.DataFrame({"chance": [float(area.mean())]})).mark_rule(
            color="black", strokeDash=[4, 3]).encode(y="chance:Q")  # a uniform map's score
        energy = curve(shown, "cam_energy_inside", "Grad-CAM mass on the object (dashed: chance)", dense_band=True)
        charts = [alt.layer(energy, chance),
                  curve(shown, "cam_pointing", "Grad-CAM peak on the object", dense_band=True),
                  *charts]
    r.chart(alt.hconcat(*charts), "localisation", "Grad-CAM localisation and concentration vs density")
    if shown["lrp_spearman"].notna().any():
        r.heading("(b3) A second attribution method: LRP next to Grad-CAM")
        r.para("LRP (zennit, EpsilonPlusFlat with BatchNorm merged into its convolution) on the same probe "
               "images and true classes: its drift from the dense model's LRP maps (grey: its seed-to-seed floor), "
               "and the same localisation metrics. Where LRP and Grad-CAM move together with density, the "
               "finding is about the network; where only one moves, it may be about that method.")
        lrp = [curve(shown, "lrp_spearman", "LRP Spearman to dense", floor=floors.floor_of(fl, design, "lrp_spearman"))]
        if has_masks:
            lrp.append(curve(shown, "lrp_energy_inside", "LRP mass on the object", dense_band=True))
        lrp.append(curve(shown, "lrp_concentration", "area holding half the LRP mass", dense_band=True))
        r.chart(alt.hconcat(*lrp), "lrp", "LRP fidelity, localisation and concentration vs density")
    sanity_section(r, rows)


def sanity_section(r: Report, rows: pd.DataFrame) -> None:
    """(b4) The model-randomisation check of each attribution method, over the sweep's dense models."""
    from lthray.explain.sanity import FAIL_AT, verdict

    dense = rows[(rows["level"] == 0) & rows["cam_sanity_spearman"].notna()]
    # every method of one seed and design shares its dense model: count each dense model once
    dense = dense.drop_duplicates(["seed", "cam_sanity_spearman"])
    if dense.empty:
        return
    r.heading("(b4) Sanity check: do the maps depend on the weights?")
    recs = []
    for name, col in (("Grad-CAM", "cam_sanity_spearman"), ("LRP", "lrp_sanity_spearman")):
        v = dense[col].dropna().astype(float).to_numpy()
        if len(v):
            m, lo, hi, n = stats.mean_ci(v)
            recs.append({"attribution": name, "dense models": n,
                         "Spearman trained vs random weights": _ci(m, max(lo, -1.0), min(hi, 1.0), 1, 2),
                         "verdict": verdict(m, lo, hi)})  # shown clipped to the range a correlation can take
    r.para("Each dense model's maps on the probe images against the maps of the same network with every weight "
           "re-initialised (Adebayo et al. 2018, independent randomisation), by Spearman correlation per image. "
           f"A method whose 95% interval lies at or above {FAIL_AT} fails (its maps barely depend on what the "
           f"network learnt), below {FAIL_AT} passes; an interval across it is inconclusive.")
    r.table(pd.DataFrame(recs))


def masks_of(rows: pd.DataFrame) -> tickets.Masks:
    """The mask files beside the rows' results folder ({} if the rows did not come from one)."""
    where = rows.attrs.get("results")
    return mask_files.read(where) if where else {}


def ticket_section(r: Report, rows: pd.DataFrame, masks: tickets.Masks, out: Path) -> None:
    """(g) Mask overlap between seeds and methods, and where each method prunes."""
    ov = tickets.overlap(rows, masks)
    if ov.empty:
        return
    r.heading("(g) Ticket overlap and structure")
    ov.to_csv(out / "mask_overlap.csv", index=False, float_format="%.5g")
    r.para("Jaccard index |A ∩ B| / |A ∪ B| of the kept weights at each pruning level. Diagonal: between seeds "
           "of one method (mean over seed pairs); off-diagonal: between two methods' masks of the same seed (mean "
           "over seeds). Chance is layer-matched: the expected Jaccard index of two random masks with the same "
           "per-layer kept counts (in each panel's title), so an overlap at chance is explained by how many "
           "weights each layer keeps alone.")
    same = tickets.same_masks(rows, masks)
    r.bullets(tickets.sentences(ov, same))
    r.chart(tickets.heatmap(ov), "mask_overlap", "mask overlap heatmaps")
    ld = tickets.layer_density(rows, masks)
    ld.to_csv(out / "layer_density.csv", index=False, float_format="%.5g")
    r.para("Fraction of each layer's weights kept, per method (mean over seeds), input layer on the left; on the "
           "log axis a layer with no weight kept cannot be drawn (those are listed under Design)."
           + "".join(f" {a} has exactly {b}'s masks and is drawn as {b}." for a, b in sorted(same.items())))
    r.chart(tickets.layer_chart(ld[~ld["family"].isin(same)]), "layer_density", "per-layer density per method")


def instability_section(r: Report, rows: pd.DataFrame, summary: pd.DataFrame, t: pd.DataFrame, out: Path) -> None:
    """(h) Linear mode connectivity: the error barrier vs rewind point and density; `t`: the barrier tests
    (instability.tests of `rows`)."""
    s = instability.from_levels(summary)
    if s.empty:
        return
    r.heading("(h) Instability analysis (linear mode connectivity)")
    tested = t[["family", "rewind_spec", "level", "upper", "p_below", "p_below_holm", "p_above", "p_above_holm",
                "verdict"]]
    s.merge(tested, on=["family", "rewind_spec", "level"], how="left").to_csv(
        out / "instability.csv", index=False, float_format="%.5g")
    r.para("Two copies of each level's network train from the same start under the same mask with different "
           "data orders; the barrier is the highest test error on the straight line between them (BN "
           f"statistics re-estimated at every point) minus the mean of the two ends. Below {instability.STABLE:.0%} "
           "(dashed) Frankle et al. (2020) call the start stable; matching tickets came from stable rewind points. "
           "'Stable' here is a test: each level's barriers over seeds against 2% by one-sided t-tests (below and "
           "above), Holm-adjusted over every barrier in this table; a rewind point is stable at every level when "
           "each level's own test passes (an intersection-union test, which needs no correction). The charts' bars "
           "are the tables' two-sided 95% intervals (logit scale, so wide and lopsided with 3 seeds) and may cross "
           "2% where a test passes; the one-sided bound each sentence quotes is the test's own. Per level, with "
           "every p-value: `instability.csv`.")
    r.bullets(instability.sentences(s, t))
    r.chart(instability.charts(s, instability.paths(rows)), "instability", "instability barrier charts")


def dense_concepts(r: Report, rows: pd.DataFrame) -> None:
    """The dense PCBM's top concepts per class, and its accuracy next to the backbone's."""
    dense = rows[(rows["level"] == 0) & (rows["status"] == "ok")].drop_duplicates("seed")
    acc, pcbm = stats.mean_ci(dense["test_acc"]), stats.mean_ci(dense["pcbm_acc"])
    r.para(f"Dense models ({pcbm[3]} seeds): backbone accuracy {_ci(*acc[:3])}%, its post-hoc concept "
           f"bottleneck {_ci(*pcbm[:3])}% (mean [95% CI]). Top concepts per class of the dense PCBM (seed "
           f"{int(dense['seed'].min())}):")
    first = dense.sort_values("seed").iloc[0]
    if first["top_concepts"] is not None:
        r.table(pd.DataFrame([e.split(": ", 1) for e in first["top_concepts"]], columns=["class", "top concepts"]))


def imp_designs(summary: pd.DataFrame) -> list[tuple[str, str]]:
    """(label prefix, design) of every design with IMP rows; the prefix names what sets the design apart
    and is empty when there is one design."""
    imp = summary[summary["family"] == "imp"].drop_duplicates("design").sort_values(["rewind_step", "design"])
    if len(imp) <= 1:
        return [("", d) for d in imp["design"]]
    names = stats.design_names(summary)
    return [(f"{names[d]}: ", d) for d in imp["design"]]


def findings(summary: pd.DataFrame, diffs: pd.DataFrame, fl: pd.DataFrame | None = None,
             acc_claim: pd.DataFrame | None = None, margin: float = inference.MARGINS["test_acc"],
             inst: pd.DataFrame | None = None) -> list[str]:
    """The headline sentences, each computed from the tables below it; every 'better', 'worse' or
    'equivalent' rests on a Holm-adjusted test or TOST (analysis.inference), every drift on its floor.
    `acc_claim` is the "accuracy falls" claim's table (analysis.claims), whose tests say how far IMP keeps
    its dense accuracy; `inst` the barrier tests (instability.tests), whose verdicts say which rewind points
    are stable."""
    fl = fl if fl is not None else pd.DataFrame(columns=["design", "metric", "kind", "floor", "lo", "hi", "n"])
    out = []
    for lab, design in imp_designs(summary):
        k = stats.knee(summary, design=design)
        kept = claims.knee_sentence(acc_claim, design, margin) if acc_claim is not None else ""
        if k is None:
            if kept:
                out.append(f"{lab}{kept}.")
            continue
        where = floors.against(k["cam_spearman"], k["cam_spearman_lo"], k["cam_spearman_hi"],
                               floors.floor_of(fl, design, "cam_spearman"))
        cam = _ci(k["cam_spearman"], k["cam_spearman_lo"], k["cam_spearman_hi"], 1, 2)
        out.append(f"{lab}{kept or 'IMP'}. At {stats.pct(k['density'])} density, the sparsest level whose mean "
                   f"accuracy is within 1 point of dense, its Grad-CAM Spearman to dense is {cam}, {where}.")
    headline = instability.summary_of(instability.from_levels(summary), inst) if inst is not None else ""
    if headline:
        out.append(headline)
    if diffs.empty:
        return out
    for fam, g in diffs.groupby("family"):
        said = [_verdicts(stats.tally(g, "test_acc"), "accuracy", f"±{_points(g['test_acc_margin'].iloc[0])}"),
                _verdicts(stats.tally(g, "cam_spearman"), "Grad-CAM Spearman",
                          f"±{g['cam_spearman_margin'].iloc[0]:g}")]
        out.append(f"{fam} vs IMP over {len(g)} matched levels (Holm within each metric's family): "
                   + "; ".join(said) + ".")
    metrics = [m for m in HEADLINE if diffs[f"{m}_p"].notna().any()]
    guided = diffs[diffs["method"].map(stats.is_guided)]
    if len(guided):
        raw = sum(int((guided[f"{m}_p"] < inference.ALPHA).sum()) for m in metrics)
        holm = sum(int((guided[f"{m}_p_holm"] < inference.ALPHA).sum()) for m in metrics)
        bh = sum(int((guided[f"{m}_p_bh"] < inference.ALPHA).sum()) for m in metrics)
        tests = sum(int(guided[f"{m}_p"].notna().sum()) for m in metrics)
        good = [(m, r) for m in metrics for _, r in guided.iterrows()
                if r[f"{m}_verdict"] in ("higher", "lower") and _favourable(m, r[f"d_{m}"])]
        bad = [(m, r) for m in metrics for _, r in guided.iterrows()
               if r[f"{m}_verdict"] in ("higher", "lower") and not _favourable(m, r[f"d_{m}"])]
        out.append(f"Guided methods against IMP: {tests} tests over {len(metrics)} metrics; {raw} have a raw p below "
                   f"{inference.ALPHA} (about {inference.ALPHA * tests:.1f} expected by chance alone), {holm} survive "
                   f"Holm within their metric's family and {bh} Benjamini-Hochberg. Of the Holm detections, "
                   f"{len(good)} favour the guided method and {len(bad)} favour IMP"
                   + ("." if not good + bad else ": " + "; ".join(
                       f"{r['family']} {stats.METRICS[m]} at {stats.pct(r['density'])} "
                       f"({r[f'd_{m}']:+.3g}, Holm p {r[f'{m}_p_holm']:.3g})" for m, r in good + bad) + "."))
    return out


# Metrics where a lower value is better (the rest: higher is better)
_LOWER_IS_BETTER = {"instability_barrier", "cam_concentration", "lrp_concentration"}


def _favourable(metric: str, d: float) -> bool:
    """Whether a difference favours the method over IMP. Concentration has no better direction of its own
    (the claim is that pruning shrinks it); it counts as favourable when lower, i.e. more focused."""
    return d < 0 if metric in _LOWER_IS_BETTER else d > 0


def _verdicts(tally: dict[str, int], metric: str, margin: str) -> str:
    """'accuracy inconclusive at 4, equivalent (±1 point) at 1': the verdicts a metric got, none at zero."""
    words = {"higher": "higher", "lower": "lower", "equivalent": f"equivalent ({margin})",
             "inconclusive": "inconclusive", "no CI": "untested (a single seed pair)"}
    return f"{metric} " + ", ".join(f"{words[v]} at {n}" for v, n in tally.items() if n)


def claims_section(r: Report, tables: dict[str, pd.DataFrame]) -> None:
    """(i) The paper's claims (analysis.claims.all_claims' tables), each stated whichever way it comes out."""
    if not tables:
        return
    r.heading("The paper's claims, tested", 3)
    r.para("Each claim is one family of comparisons (every method at every pruned level, paired by seed), "
           "Holm-adjusted; 'no change' needs TOST at the declared margin. A floor is the mean of its pairs, "
           "treated as known (its spread is in the noise-floor table).")
    for name, t in tables.items():
        r.bullets(claims.sentences(name, t))


def parse_margins(items: list[str]) -> dict[str, float]:
    """--margin METRIC=VALUE items as a dict; AnalysisError naming a bad one."""
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or name not in inference.MARGINS:
            raise AnalysisError(f"--margin {item!r}: expected METRIC=VALUE with METRIC one of "
                                f"{', '.join(inference.MARGINS)}")
        try:
            out[name] = float(value)
        except ValueError:
            raise AnalysisError(f"--margin {item!r}: {value!r} is not a number") from None
        if not out[name] > 0:
            raise AnalysisError(f"--margin {item!r}: a margin must be > 0")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    margin_items = []
    while "--margin" in argv:  # --margin METRIC=VALUE, repeatable; the rest is cli_inputs'
        i = argv.index("--margin")
        if i + 1 >= len(argv):
            print("error: --margin needs METRIC=VALUE", file=sys.stderr)
            return 2
        margin_items.append(argv[i + 1])
        del argv[i : i + 2]
    try:
        margins = parse_margins(margin_items)
        rows, out = cli_inputs(__doc__, argv)
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = write_report(rows, out, margins)
    print(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB) and {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
