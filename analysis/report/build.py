"""The study report of a sweep's rows: the design, the findings, then one section per question
(a) the lottery-ticket curve, (b) Grad-CAM fidelity and faithfulness, (c) concept fidelity, (d) every
method vs IMP paired by seed, (e) Pareto fronts per density band, (f) the gallery and concept shift,
(g) tickets, (h) instability; and the CSV tables behind every number."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from analysis import claims, floors, inference, instability, search, stats, tickets
from analysis.load import sweep_meta
from analysis.report import verdicts
from analysis.report.charts import by_series, curve, diff_panels, lth_curves, pareto_bands
from analysis.report.findings import HEADLINE, findings, imp_designs
from analysis.report.preserve_section import preserve_section
from analysis.report.render import Report, _ci, _points
from analysis.report.sections import (
    claims_section,
    dense_concepts,
    empty_layer_sentences,
    floor_section,
    gallery_section,
    instability_section,
    localisation_section,
    masks_of,
    ticket_section,
)
from analysis.report.training import weights_section
from lthray import metrics


def _design_text(rows: pd.DataFrame, margins: dict[str, float], tables: list[str]) -> list[str]:
    from lthray.config import from_flat

    c = from_flat(json.loads(rows["config_json"].iloc[0]))
    n_trials, seeds = rows["run_id"].nunique(), sorted(int(s) for s in rows["seed"].unique())
    methods = sorted(stats.with_design(rows)["family"].unique())
    shown = ", ".join(f"{stats.METRICS[m]} ±" + (_points(v) if metrics.METRICS.get(m).scale == 100 else f"{v:g}")
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


def per_seed_columns() -> list[str]:
    return ["run_id", "method", "family", "guidance_weight", "lambda_fid", "seed", "level", "density", "status",
            "train_steps", *stats.METRICS, "mask_jaccard_imp", *metrics.SAME_INIT_FLOORS.values(), "empty_layers",
            "concept_refit_overlap", "concept_refit_spearman",
            "cam_sanity_spearman", "lrp_sanity_spearman", "object_area", "design"]


def per_seed_table(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per trial and level with every metric the report uses: every interval can be recomputed."""
    d = stats.with_design(rows)
    d = d.assign(empty_layers=[" ".join(v) if v is not None and len(v) else "" for v in d["empty_layers"]])
    return d[[c for c in per_seed_columns() if c in d.columns]].sort_values(["family", "seed", "level"])


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


def write_tables(rows: pd.DataFrame, out: Path, summary: pd.DataFrame, diffs: pd.DataFrame,
                 fl: pd.DataFrame) -> list[str]:
    """The CSV tables behind every number of the report; returns the names of those it names itself."""
    per_seed_table(rows).to_csv(out / "per_seed.csv", index=False, float_format="%.5g")
    summary.to_csv(out / "summary.csv", index=False, float_format="%.5g")
    if not diffs.empty:
        diffs.drop(columns=[c for c in diffs.columns if c.startswith("pairs_")]).to_csv(
            out / "paired_differences.csv", index=False, float_format="%.5g")
    fl.to_csv(out / "noise_floors.csv", index=False, float_format="%.5g")
    return ["summary.csv", "noise_floors.csv"] + ([] if diffs.empty else ["paired_differences.csv"])


def glance_section(r: Report, tables: dict[str, pd.DataFrame], diffs: pd.DataFrame) -> None:
    """The verdicts at a glance: one grid per claim family, and one per headline metric against IMP."""
    r.heading("At a glance")
    r.para("Each cell is one corrected test (Holm within its family; 'no change' needs TOST at the declared "
           "margin), coloured by its verdict, with the mean effect printed in it. The sentences and tables below "
           "hold the intervals and p-values.")
    grid = verdicts.claim_grids(tables)
    if grid is not None:
        r.chart(grid, "verdicts_claims", "verdict of every claim at every method and density")
    grid = verdicts.versus_imp_grids(diffs) if not diffs.empty else None
    if grid is not None:
        r.chart(grid, "verdicts_vs_imp", "verdict of every method against IMP at every density")


def design_section(r: Report, rows: pd.DataFrame, summary: pd.DataFrame, margins: dict[str, float],
                   names: list[str], confirm_of: str | None, out: Path) -> None:
    r.heading("Design")
    r.bullets(_design_text(rows, margins, names))
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


def lth_section(r: Report, summary: pd.DataFrame, shown: pd.DataFrame, acc_claim: pd.DataFrame | None,
                margin: float) -> None:
    r.heading("(a) The lottery-ticket curve")
    knees = [(lab, claims.knee_sentence(acc_claim, d, margin) if acc_claim is not None else "")
             for lab, d in imp_designs(summary)]
    r.para("Test accuracy vs density, mean and 95% interval over seeds; the grey band is the dense model's "
           "interval. " + " ".join(f"{lab}{k}." for lab, k in knees if k))
    r.chart(lth_curves(shown), "lth_curve", "accuracy vs density")
    collapse = summary[summary["collapsed"]]
    if not collapse.empty:
        r.para("Seeds that disagree wildly (some at chance accuracy, others well above it): a mean describes none "
               "of them, so here they are seed by seed.")
        r.bullets([f"{c['family']} at {stats.pct(c['density'])} density (level {c['level']}): {c['acc_by_seed']}."
                   for _, c in collapse.sort_values(["family", "level"]).iterrows()])


def cam_section(r: Report, rows: pd.DataFrame, shown: pd.DataFrame, fl: pd.DataFrame, design: str) -> None:
    r.heading("(b) Grad-CAM fidelity and faithfulness")
    kind = "same-initialisation" if floors.floor_of(fl, design, "cam_spearman", "same_init") is not None \
        else "seed-to-seed"
    r.para("Agreement with the same seed's dense maps; the grey band with a dashed line is the noise floor, here "
           f"the {kind} floor (same initialisation: how far the dense model's copy trained with another data order "
           "agrees, 95% interval over seeds; seed-to-seed: how far two dense models of different seeds agree, "
           "lowest to highest pair; dashed: the mean). The noise-floor table below has both. Faithfulness is of "
           "each model's own maps (ROAD or confidence drop) and has no floor.")
    r.chart(alt.hconcat(curve(shown, "cam_spearman", "Grad-CAM Spearman to dense",
                              floor=floors.floor_of(fl, design, "cam_spearman")),
                        curve(shown, "cam_iou", "Grad-CAM top-k IoU to dense",
                              floor=floors.floor_of(fl, design, "cam_iou")),
                        curve(shown, "cam_faithfulness", "Grad-CAM faithfulness (own maps)")),
            "cam_curves", "Grad-CAM fidelity vs density")
    floor_section(r, fl)
    localisation_section(r, rows, shown, fl, design)


def concept_section(r: Report, rows: pd.DataFrame, summary: pd.DataFrame, shown: pd.DataFrame, fl: pd.DataFrame,
                    design: str) -> None:
    r.heading("(c) Concept fidelity")
    if not summary["concept_topk_overlap"].notna().any():
        r.para("Concepts were disabled in this sweep.")
        return
    r.para("Agreement of each level's post-hoc concept bottleneck with the dense one's: each level's features go "
           "through the dense model's projection (concepts kept by the fidelity cutoff) and only its concept -> "
           "class layer is refitted, on bootstraps of the bank's images (mean over refits). Grey: the refit floor "
           "(the dense backbone measured the same way; 95% interval over seeds).")
    range_paragraph(r, rows, design)
    refit = floors.floor_of(fl, design, "concept_topk_overlap", "refit")
    r.chart(alt.hconcat(curve(shown, "concept_topk_overlap", "concept top-k overlap with dense", floor=refit),
                        curve(shown, "concept_weight_spearman", "concept weight Spearman to dense",
                              floor=floors.floor_of(fl, design, "concept_weight_spearman", "refit")),
                        curve(shown, "pcbm_acc", "PCBM accuracy", dense_band=True)),
            "concept_curves", "concept fidelity vs density")
    dense_concepts(r, rows)


def range_paragraph(r: Report, rows: pd.DataFrame, design: str) -> None:
    """The concept measure's range, printed before any concept result: its top (the dense backbone refitted)
    and its bottom (the untrained initialisation), and whether the seeds at hand separate them."""
    rng = floors.concept_range(rows)
    rng = rng[rng["design"] == design] if not rng.empty else rng
    if rng.empty:
        r.para("The concept measure's range was not measured (rows before schema 11): no untrained-backbone control.")
        return
    g = rng.iloc[0]
    top, bottom = _ci(g["top"], g["top_lo"], g["top_hi"], 1, 2), _ci(g["bottom"], g["bottom_lo"], g["bottom_hi"], 1, 2)
    ends = (f"the dense backbone refitted (the top) {top}, the untrained initialisation through the same projection "
            f"(the bottom) {bottom}, chance {g['chance']:.2f} ({g['kept']:.0f} concepts kept)")
    if g["separates"]:
        r.para(f"Range of the measure over {g['seeds']} dense models: {ends}. The two ends are separated (one-sided "
               f"paired t-test, p = {g['p']:.2g}): a level between them has lost part of what training built.")
    else:
        r.para(f"Range of the measure over {g['seeds']} dense models: {ends}. The instrument cannot separate an "
               f"untrained backbone from a refitted one with {g['seeds']} seeds (one-sided paired t-test, p = "
               f"{g['p']:.2g}): no concept claim is made.")


def versus_imp_section(r: Report, diffs: pd.DataFrame) -> None:
    r.heading("(d) Each method against IMP, paired by seed and level")
    if diffs.empty:
        r.para("No IMP trial shares a design and seed with another method: no paired comparison is possible.")
        return
    r.para("Mean paired difference with its 95% interval. A series whose intervals reach beyond the zoomed "
           "axis is left out of that panel and named under its title; a triangle marks an interval clipped at "
           "the range a difference can take. Every comparison, tested: the table at the end of the report.")
    r.chart(diff_panels(diffs, [("test_acc", "Δ accuracy vs IMP (points)", 100.0, 10.0),
                                ("cam_spearman", "Δ Grad-CAM Spearman vs IMP", 1.0, 0.4),
                                ("concept_topk_overlap", "Δ concept overlap vs IMP", 1.0, 0.4)]),
            "paired_differences", "paired differences against IMP")


def comparisons_table(diffs: pd.DataFrame) -> pd.DataFrame:
    """Every comparison against IMP of every headline or guard metric: effect, 95% interval, Holm p and
    verdict, one row per (method, level, metric)."""
    recs = []
    for _, d in diffs.sort_values(["family", "level"]).iterrows():
        for m in metrics.all_metrics():
            if not m.role or f"d_{m.name}" not in d or not np.isfinite(d[f"d_{m.name}"]):
                continue
            recs.append({"method": d["family"], "density": stats.pct(d["density"]), "level": d["level"],
                         "metric": m.label, "difference": _ci(d[f"d_{m.name}"], d[f"d_{m.name}_lo"],
                                                               d[f"d_{m.name}_hi"], m.scale, 2),
                         "Holm p": f"{d[f'{m.name}_p_holm']:.3g}", "verdict": d[f"{m.name}_verdict"]})
    return pd.DataFrame(recs)


def metrics_section(r: Report) -> None:
    """What every metric is and how it is read (lthray.metrics)."""
    r.heading("The metrics", 3)
    r.table(pd.DataFrame([{
        "metric": m.name, "label": m.label, "range": "" if m.range is None else f"[{m.range[0]:g}, {m.range[1]:g}]",
        "better": {1: "higher", -1: "lower", 0: "neither"}[m.direction],
        "margin": _points(m.margin) if m.scale == 100 else f"{m.margin:g}",
        "floors": ", ".join(k for k, _ in m.floors), "role": m.role} for m in metrics.all_metrics()]))


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
    if masks:  # per row: its mask's overlap with the same seed's IMP mask (per_seed.csv)
        rows = rows.assign(mask_jaccard_imp=tickets.jaccard_to_imp(rows, masks))
    names = write_tables(rows, out, summary, diffs, fl)
    random_bank = any(b.endswith("/random") for b in rows["concept_bank"].unique())
    title = f"lthray study: {rows['sweep'].iloc[0]}" + (
        " (RANDOM concept bank: concept results check the pipeline only)" if random_bank else "")
    tables = claims.all_claims(rows, fl, margins)
    if tables:  # every claim's tests (Holm, TOST and non-inferiority p-values) in one table beside the report
        pd.concat([t.assign(claim=k) for k, t in tables.items()]).drop(columns=["pairs_x"], errors="ignore").to_csv(
            out / "claims.csv", index=False, float_format="%.5g")
        names.append("claims.csv")
    barriers = instability.tests(rows)  # once: the headline and section (h) read the same tests
    r = Report(out)
    names += preserve_section(r, rows, out)  # the preservation study's decision first, when these are its rows
    glance_section(r, tables, diffs)
    r.heading("Findings")
    r.bullets(findings(summary, diffs, fl, tables.get("accuracy falls"), margins["test_acc"], barriers))
    design_section(r, rows, summary, margins, names, confirm_of, out)
    design, shown = main_design(summary), by_series(summary)
    lth_section(r, summary, shown, tables.get("accuracy falls"), margins["test_acc"])
    cam_section(r, rows, shown, fl, design)
    concept_section(r, rows, summary, shown, fl, design)
    versus_imp_section(r, diffs)
    r.heading("(e) Pareto fronts of accuracy vs Grad-CAM fidelity, per density band")
    r.chart(pareto_bands(rows), "pareto_bands", "Pareto fronts per density band")
    gallery_section(r, rows, out, "(f) ")
    ticket_section(r, rows, masks or {}, out)
    instability_section(r, rows, summary, barriers, out)
    weights_section(r, rows, shown, out)
    r.heading("In detail")
    claims_section(r, tables)
    if not diffs.empty:
        r.heading("Every comparison against IMP", 3)
        r.table(comparisons_table(diffs))
    metrics_section(r)
    r.write(title)
    return out / "report.html"


def margin_arg(item: str) -> tuple[str, float]:
    """One --margin METRIC=VALUE (an argparse type): a metric that has a margin and a value > 0."""
    name, sep, value = item.partition("=")
    if not sep or name not in inference.MARGINS:
        raise argparse.ArgumentTypeError(f"{item!r}: expected METRIC=VALUE with METRIC one of "
                                         f"{', '.join(inference.MARGINS)}")
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{item!r}: {value!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{item!r}: a margin must be > 0")
    return name, v
