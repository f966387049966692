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

from analysis import instability, search, stats, tickets
from analysis.axes import density_band, density_x
from analysis.front import pareto_front
from analysis.gallery import concept_shift, gallery
from analysis.load import AnalysisError, cli_inputs, sweep_meta
from lthray import mask_files

FAMILY_COLOR = alt.Color("family:N", title="method")


def by_series(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with `family` made unique per design for drawing ('imp [prune.rewind_step=25it]'), so a
    line never joins points of two designs."""
    return summary.assign(family=stats.series(summary))


RANGES = {"cam_energy_inside": (0, 1), "cam_pointing": (0, 1), "cam_concentration": (0, 1), "lrp_spearman": (-1, 1),
          "lrp_energy_inside": (0, 1), "lrp_pointing": (0, 1), "lrp_concentration": (0, 1),
          "test_acc": (0, 1), "pcbm_acc": (0, 1), "cam_iou": (0, 1), "concept_topk_overlap": (0, 1),
          "cam_spearman": (-1, 1), "concept_weight_spearman": (-1, 1)}


def curve(summary: pd.DataFrame, metric: str, title: str, dense_band: bool = False,
          color: alt.Color = FAMILY_COLOR) -> alt.Chart:
    """Mean of `metric` vs density per method, 95% CI as a band; optionally the dense model's CI band.
    With few seeds a t interval can reach past what the metric can be: it is drawn clipped to that range."""
    cols = ["family", "density", "level", "seeds", metric, f"{metric}_lo", f"{metric}_hi"]
    d = summary[cols].dropna(subset=[metric]).copy()
    if metric in RANGES:
        d[[f"{metric}_lo", f"{metric}_hi"]] = d[[f"{metric}_lo", f"{metric}_hi"]].clip(*RANGES[metric])
    base = alt.Chart(d).encode(x=density_x(d["density"]), color=color)
    band = base.mark_area(opacity=0.15).encode(y=f"{metric}_lo:Q", y2=f"{metric}_hi:Q")
    line = base.mark_line(point=True).encode(
        y=alt.Y(f"{metric}:Q", title=title, scale=alt.Scale(zero=False)),
        tooltip=["family", "level", alt.Tooltip("density:Q", format=".4f"), alt.Tooltip(f"{metric}:Q", format=".4f"),
                 alt.Tooltip(f"{metric}_lo:Q", format=".4f"), alt.Tooltip(f"{metric}_hi:Q", format=".4f"), "seeds"])
    layers = [band, line]
    if dense_band:
        dense = d[d["level"] == 0]
        lo, hi = dense[f"{metric}_lo"].min(), dense[f"{metric}_hi"].max()
        if np.isfinite(lo) and np.isfinite(hi):
            ref = pd.DataFrame({"lo": [lo], "hi": [hi]})
            layers.insert(0, alt.Chart(ref).mark_rect(color="#999", opacity=0.25).encode(y="lo:Q", y2="hi:Q"))
    return alt.layer(*layers).properties(width=300, height=220, title=title)


def diff_chart(diffs: pd.DataFrame, metric: str, title: str, scale: float = 1.0,
               color: alt.Color = FAMILY_COLOR) -> alt.Chart:
    """Paired difference (method - IMP) vs density with 95% CI bars, and the zero line."""
    d = diffs[["family", "density", "level", "pairs", f"d_{metric}", f"d_{metric}_lo", f"d_{metric}_hi"]].copy()
    for c in (f"d_{metric}", f"d_{metric}_lo", f"d_{metric}_hi"):
        d[c] = d[c] * scale
    # methods side by side at each level: a small multiplicative offset on the log axis
    fams = sorted(d["family"].unique())
    d["x"] = d["density"] * d["family"].map({f: 1.08 ** (i - (len(fams) - 1) / 2) for i, f in enumerate(fams)})
    base = alt.Chart(d).encode(x=density_x(d["density"], "x"), color=color)
    bars = base.mark_errorbar(ticks=True).encode(y=alt.Y(f"d_{metric}_lo:Q", title=title), y2=f"d_{metric}_hi:Q")
    pts = base.mark_point(filled=True, size=50).encode(
        y=f"d_{metric}:Q", tooltip=["family", "level", "pairs", alt.Tooltip(f"d_{metric}:Q", format=".3f"),
                                    alt.Tooltip(f"d_{metric}_lo:Q", format=".3f"),
                                    alt.Tooltip(f"d_{metric}_hi:Q", format=".3f")])
    zero = alt.Chart(pd.DataFrame({"z": [0.0]})).mark_rule(color="black", strokeDash=[4, 3]).encode(y="z:Q")
    return alt.layer(zero, bars, pts).properties(width=300, height=220, title=title)


def pareto_bands(rows: pd.DataFrame, fid: str = "cam_spearman", color: alt.Color = FAMILY_COLOR) -> alt.FacetChart:
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
        color=color, tooltip=["family", "seed", "level", alt.Tooltip("density:Q", format=".4f"),
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


def _design_text(rows: pd.DataFrame) -> list[str]:
    from lthray.config import from_flat

    c = from_flat(json.loads(rows["config_json"].iloc[0]))
    n_trials, seeds = rows["run_id"].nunique(), sorted(int(s) for s in rows["seed"].unique())
    methods = sorted(stats.with_design(rows)["family"].unique())
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
        "Intervals: 95% t intervals over seeds; a difference whose interval spans 0 is reported as "
        "'no detectable difference'.",
    ]


def write_report(rows: pd.DataFrame, out: Path) -> Path:
    """The report the sweep behind `rows` calls for: a search report for an Optuna search, else the
    study report (with the confirm section when the sweep confirms a search)."""
    meta = sweep_meta(rows.attrs.get("results"))
    if meta.get("search") == "optuna":
        return build_search(rows, out)
    return build(rows, out, masks_of(rows), confirm_of=meta.get("confirm_of"))


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


def build(rows: pd.DataFrame, out: Path, masks: tickets.Masks | None = None, confirm_of: str | None = None) -> Path:
    """Write report.html, report.md, their PNGs and the CSV tables behind them into `out`.
    `masks` (lthray.mask_files.read of the results folder) adds the ticket-overlap section; `confirm_of`
    (the search a confirm sweep re-runs) adds the confirm section."""
    out.mkdir(parents=True, exist_ok=True)
    summary, diffs = stats.level_summary(rows), stats.paired_differences(rows)
    summary.to_csv(out / "summary.csv", index=False, float_format="%.5g")
    diffs.to_csv(out / "paired_differences.csv", index=False, float_format="%.5g")
    banks = sorted(rows["concept_bank"].unique())
    random_bank = any(b.endswith("/random") for b in banks)
    title = f"lthray study: {rows['sweep'].iloc[0]}" + (
        " (RANDOM concept bank: concept results check the pipeline only)" if random_bank else "")
    r = Report(out)
    r.heading("Design")
    r.bullets(_design_text(rows))
    if summary["design"].nunique() > 1:
        r.para("Several designs are present; each is drawn as its own line and comparisons stay within one "
               "design. They differ in: " + "; ".join(sorted(stats.design_names(summary).values())) + ".")
    diverged = rows.loc[rows["status"] != "ok", "run_id"].nunique()
    if diverged:
        r.para(f"{diverged} trials diverged at some level; their diverged levels are left out of every mean.")
    if confirm_of:
        search.confirm_section(r, rows, out, confirm_of)

    r.heading("Findings")
    r.bullets(findings(summary, diffs))

    r.heading("(a) The lottery-ticket curve")
    knees = [(lab, stats.knee(summary, design=d)) for lab, d in imp_designs(summary)]
    r.para("Test accuracy vs density, mean and 95% CI over seeds; the grey band is the dense model's CI. "
           + " ".join(f"{lab}IMP stays within 1 point of dense down to {stats.pct(k['density'])} density (level "
                      f"{k['level']})." if k is not None else
                      f"{lab}IMP falls more than 1 point below dense at its first pruned level." for lab, k in knees))
    shown = by_series(summary)
    # one colour per method in every chart of the report, whichever methods a chart happens to show
    color = alt.Color("family:N", title="method", scale=alt.Scale(
        domain=sorted(set(shown["family"]) | set(stats.with_design(rows)["family"]))))
    r.chart(curve(shown, "test_acc", "test accuracy", dense_band=True, color=color), "lth_curve", "accuracy vs density")
    r.heading("(b) Grad-CAM fidelity and faithfulness")
    r.chart(alt.hconcat(curve(shown, "cam_spearman", "Grad-CAM Spearman to dense", color=color),
                        curve(shown, "cam_iou", "Grad-CAM top-k IoU to dense", color=color),
                        curve(shown, "cam_faithfulness", "Grad-CAM faithfulness (own maps)", color=color)),
            "cam_curves", "Grad-CAM fidelity vs density")
    localisation_section(r, rows, shown, color)
    r.heading("(c) Concept fidelity")
    if summary["concept_topk_overlap"].notna().any():
        r.chart(alt.hconcat(curve(shown, "concept_topk_overlap", "concept top-k overlap with dense", color=color),
                            curve(shown, "concept_weight_spearman", "concept weight Spearman to dense", color=color),
                            curve(shown, "pcbm_acc", "PCBM accuracy", dense_band=True, color=color)),
                "concept_curves", "concept fidelity vs density")
        dense_concepts(r, rows)
    else:
        r.para("Concepts were disabled in this sweep.")
    r.heading("(d) Each method against IMP, paired by seed and level")
    if diffs.empty:
        r.para("No IMP trial shares a design and seed with another method: no paired comparison is possible.")
    else:
        r.chart(alt.hconcat(diff_chart(diffs, "test_acc", "Δ accuracy vs IMP (points)", 100.0, color=color),
                            diff_chart(diffs, "cam_spearman", "Δ Grad-CAM Spearman vs IMP", color=color),
                            diff_chart(diffs, "concept_topk_overlap", "Δ concept overlap vs IMP", color=color)),
                "paired_differences", "paired differences against IMP")
        r.bullets([stats.sentence(rec) for _, rec in diffs.sort_values(["family", "level"]).iterrows()])
    r.heading("(e) Pareto fronts of accuracy vs Grad-CAM fidelity, per density band")
    r.chart(pareto_bands(rows, color=color), "pareto_bands", "Pareto fronts per density band")
    gallery_section(r, rows, out, "(f) ")
    ticket_section(r, rows, masks or {}, out)
    instability_section(r, rows, summary, out)
    r.write(title)
    return out / "report.html"


def gallery_section(r: Report, rows: pd.DataFrame, out: Path, label: str = "") -> None:
    """The Grad-CAM gallery (gallery.png) and the concept shift (concept_shift.csv): the one place both
    are computed, for the study report and the search report alike."""
    r.heading(f"{label}Grad-CAM gallery and concept shift")
    g = gallery(rows, out)
    if g is not None:
        r.image(g, "Grad-CAM gallery")
    shift = concept_shift(rows)
    if not shift.empty:
        shift.to_csv(out / "concept_shift.csv", index=False)
        r.table(shift[["method", "class", "density", "kept", "lost", "gained"]].round({"density": 4}))


def localisation_section(r: Report, rows: pd.DataFrame, shown: pd.DataFrame, color: alt.Color) -> None:
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
           "lower = focused on a part). Mean and 95% CI over seeds; the grey band is the dense models' CI "
           "over seeds, the seed-to-seed noise floor a pruned model's change must clear.")
    charts = [curve(shown, "cam_concentration", "area holding half the mass", dense_band=True, color=color)]
    if has_masks:
        chance = alt.Chart(pd.DataFrame({"chance": [float(area.mean())]})).mark_rule(
            color="black", strokeDash=[4, 3]).encode(y="chance:Q")  # a uniform map's score
        energy = curve(shown, "cam_energy_inside", "Grad-CAM mass on the object (dashed: chance)", dense_band=True,
                       color=color)
        charts = [alt.layer(energy, chance),
                  curve(shown, "cam_pointing", "Grad-CAM peak on the object", dense_band=True, color=color),
                  *charts]
    r.chart(alt.hconcat(*charts), "localisation", "Grad-CAM localisation and concentration vs density")
    if shown["lrp_spearman"].notna().any():
        r.heading("(b3) A second attribution method: LRP next to Grad-CAM")
        r.para("LRP (zennit, EpsilonPlusFlat with BatchNorm merged into its convolution) on the same probe "
               "images and true classes: its drift from the dense model's LRP maps, and the same localisation "
               "metrics. Where LRP and Grad-CAM move together with density, the finding is about the network; "
               "where only one moves, it may be about that method.")
        lrp = [curve(shown, "lrp_spearman", "LRP Spearman to dense", color=color)]
        if has_masks:
            lrp.append(curve(shown, "lrp_energy_inside", "LRP mass on the object", dense_band=True, color=color))
        lrp.append(curve(shown, "lrp_concentration", "area holding half the LRP mass", dense_band=True,
                         color=color))
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
    r.para("Jaccard overlap of the kept weights at each pruning level. Diagonal: between seeds of one method "
           "(mean over seed pairs); off-diagonal: between two methods' masks of the same seed (mean over "
           "seeds). Two independent random masks of density d overlap by d/(2-d): the chance level in each "
           "panel's title.")
    same = tickets.same_masks(rows, masks)
    r.bullets(tickets.sentences(ov, same))
    r.chart(tickets.heatmap(ov), "mask_overlap", "mask overlap heatmaps")
    ld = tickets.layer_density(rows, masks)
    ld.to_csv(out / "layer_density.csv", index=False, float_format="%.5g")
    r.para("Fraction of each layer's weights kept, per method (mean over seeds), input layer on the left."
           + "".join(f" {a} has exactly {b}'s masks and is drawn as {b}." for a, b in sorted(same.items())))
    r.chart(tickets.layer_chart(ld[~ld["family"].isin(same)]), "layer_density", "per-layer density per method")


def instability_section(r: Report, rows: pd.DataFrame, summary: pd.DataFrame, out: Path) -> None:
    """(h) Linear mode connectivity: the error barrier vs rewind point and density."""
    s = instability.from_levels(summary)
    if s.empty:
        return
    r.heading("(h) Instability analysis (linear mode connectivity)")
    s.to_csv(out / "instability.csv", index=False, float_format="%.5g")
    r.para("Two copies of each level's network train from the same start under the same mask with different "
           "data orders; the barrier is the highest test error on the straight line between them (BN "
           f"statistics re-estimated at every point) minus the mean of the two ends. Below {instability.STABLE:.0%} "
           "(dashed) Frankle et al. (2020) call the start stable; matching tickets came from stable rewind points.")
    r.bullets(instability.sentences(s))
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


def findings(summary: pd.DataFrame, diffs: pd.DataFrame) -> list[str]:
    """The headline sentences, each computed from the tables below it."""
    out = []
    for lab, design in imp_designs(summary):
        k = stats.knee(summary, design=design)
        if k is not None:
            out.append(f"{lab}IMP keeps dense accuracy (within 1 point) down to {stats.pct(k['density'])} density; "
                       f"its Grad-CAM Spearman to dense is then {k['cam_spearman']:.2f}: explanations drift "
                       "before accuracy does." if k["cam_spearman"] < 0.95 else
                       f"{lab}IMP keeps dense accuracy (within 1 point) down to {stats.pct(k['density'])} density.")
    inst = instability.summary_of(summary)
    if inst:
        out.append(inst)
    if diffs.empty:
        return out
    for fam, g in diffs.groupby("family"):
        acc, cam = stats.tally(g, "test_acc"), stats.tally(g, "cam_spearman")
        n = len(g)
        out.append(f"{fam} vs IMP over {n} matched levels: accuracy higher at {acc['higher']}, lower at "
                   f"{acc['lower']}, no detectable difference at {acc['no detectable difference']}; Grad-CAM "
                   f"Spearman higher at {cam['higher']}, lower at {cam['lower']}, no detectable difference at "
                   f"{cam['no detectable difference']}"
                   + (f" (a single seed pair, so no CI, at {acc['no CI']})" if acc["no CI"] else "") + ".")
    guided = diffs[diffs["method"].map(stats.is_guided)]
    better = [stats.verdict(r["d_test_acc"], r["d_test_acc_lo"], r["d_test_acc_hi"]) == "higher"
              or stats.verdict(r["d_cam_spearman"], r["d_cam_spearman_lo"], r["d_cam_spearman_hi"]) == "higher"
              for _, r in guided.iterrows()]
    if len(guided) and not any(better):
        out.append("Guided pruning did not detectably beat IMP on accuracy or Grad-CAM fidelity at any matched "
                   "density in this study.")
    elif len(guided):
        out.append(f"Guided pruning was detectably better than IMP on accuracy or Grad-CAM fidelity at "
                   f"{sum(better)} of {len(guided)} matched (method, density) points; see (d). With "
                   f"{2 * len(guided)} tests at 95% confidence, about {0.05 * 2 * len(guided):.1f} would exclude 0 "
                   "by chance alone, so a lone detection is no evidence of an effect.")
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        rows, out = cli_inputs(__doc__, argv)
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = write_report(rows, out)
    print(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB) and {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
