"""Pareto fronts of final accuracy against explanation fidelity, and the curves behind them.

    python -m analysis.pareto [--results runs/NAME/results] [--out DIR] [--margin METRIC=VALUE ...]
                              [--report-only]

The one command that makes a report. --margin replaces a metric's declared equivalence margin
(lthray.metrics; e.g. test_acc=0.005 for half a point); --report-only writes the study report alone (as
the committed study pages under docs/study are made).

Writes into DIR: pareto.html (every chart, self-contained), pareto.png (accuracy vs Grad-CAM fidelity and
vs concept fidelity, one front per method), lth_trials.png (accuracy vs density, one line per trial),
concept_curve.png (concept overlap vs density), pareto_front.csv (the non-dominated trials), trials.csv
(every trial's final level) and by_density.csv (metrics per density band). Then the report the sweep
calls for (analysis.report.write_report): report.html and report.md with their PNGs and tables; a grid's
study report also writes gallery.png (Grad-CAM overlays, dense vs pruned) and concept_shift.csv.
"""

from __future__ import annotations

import argparse
import sys

import altair as alt
import pandas as pd

from analysis import report
from analysis.axes import band_upper, density_band
from analysis.front import pareto_front
from analysis.load import AnalysisError, cli_inputs, final_rows
from lthray import metrics

FIDELITY = "cam_spearman"
CONCEPT = "concept_topk_overlap"
AXIS = {m: metrics.LABELS[m] for m in (FIDELITY, CONCEPT)}  # axis titles: the metrics' own labels (lthray.metrics)


def density_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread of each metric per (method, g, lambda_fid, kd_weight) at matched densities.

    Trials end at different densities, so a fair comparison bins every healthy level by density
    (bins (lo, hi]; the dense level is its own bin), averages within each trial first, then across trials.
    """
    ok = rows[rows["status"] == "ok"].copy()
    ok["density_bin"], ok["_upper"] = density_band(ok["density"], ok["level"]), band_upper(ok["density"], ok["level"])
    metrics = [m for m in ("test_acc", FIDELITY, "cam_iou", CONCEPT, "pcbm_acc") if m in ok]
    ok["kd_weight"] = ok["kd_weight"].fillna(0.0) if "kd_weight" in ok else 0.0  # rows before schema 12: none
    family = ["method", "guidance_weight", "lambda_fid", "kd_weight"]
    per_trial = ok.groupby([*family, "density_bin", "run_id"], as_index=False)[[*metrics, "_upper"]].mean()
    groups = per_trial.groupby([*family, "density_bin"])
    out = groups[metrics].agg(["mean", "std"])
    out.columns = [f"{m}_{stat}" for m, stat in out.columns]
    out["trials"] = groups["run_id"].nunique()
    out["_upper"] = groups["_upper"].first()
    order = [True] * len(family) + [False]
    return out.reset_index().sort_values([*family, "_upper"], ascending=order).drop(columns="_upper")


def front_chart(trials: pd.DataFrame, front: pd.DataFrame, fid: str = FIDELITY) -> alt.LayerChart:
    """Final accuracy vs a fidelity measure: every trial, and each method's Pareto front ringed."""
    base = alt.Chart(trials).encode(
        x=alt.X(f"{fid}:Q", title=AXIS[fid], scale=alt.Scale(zero=False)),
        y=alt.Y("test_acc:Q", title="final test accuracy", scale=alt.Scale(zero=False)),
    )
    points = base.mark_point(filled=True, size=70, opacity=0.85).encode(
        color=alt.Color("density:Q", scale=alt.Scale(type="log", scheme="viridis"), title="density",
                        legend=alt.Legend(format=".2~%")),
        shape=alt.Shape("method:N", title="method"),
        tooltip=["method", "run_id", "rewind", "rewind_spec", "guidance_weight", "lambda_fid", "seed",
                 alt.Tooltip("density:Q", format=".4f"),
                 alt.Tooltip("test_acc:Q", format=".4f"), alt.Tooltip(f"{fid}:Q", format=".3f")],
    )
    # the front of each method: a step line through its non-dominated trials, each ringed
    lines = alt.Chart(front).mark_line(strokeWidth=1.5, interpolate="step-after", color="#444").encode(
        x=f"{fid}:Q", y="test_acc:Q", strokeDash=alt.StrokeDash("method:N", title="Pareto front"),
        detail="method:N",
    )
    rings = alt.Chart(front).mark_point(size=260, strokeWidth=1.5, color="#444").encode(
        x=f"{fid}:Q", y="test_acc:Q", shape=alt.Shape("method:N")
    )
    return (lines + rings + points).properties(width=380, height=300, title=f"Accuracy vs {AXIS[fid].split(' (')[0]}")


def curve_chart(rows: pd.DataFrame, y: str, title: str) -> alt.FacetChart:
    """`y` against density, one line per trial, faceted by method."""
    ok = rows[(rows["status"] == "ok") & rows[y].notna()]
    return alt.Chart(ok).mark_line(point=True, opacity=0.8).encode(
        x=alt.X("density:Q", scale=alt.Scale(type="log", reverse=True, nice=False), title="density"),
        y=alt.Y(f"{y}:Q", title=title, scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("guidance_weight:O", title="guidance g"), detail="run_id:N",
        tooltip=["run_id", "level", alt.Tooltip("density:Q", format=".4f"), alt.Tooltip(f"{y}:Q", format=".3f")],
    ).properties(width=220, height=180).facet(facet=alt.Facet("method:N", title=f"{title} vs density"), columns=3)


def lth_chart(rows: pd.DataFrame) -> alt.FacetChart:
    ok = rows[rows["status"] == "ok"].copy()
    ok["schedule"] = ok["rewind"] + " @ " + ok["rewind_spec"]
    # dense baseline per method as a column: layered charts can only be faceted over one dataset
    ok["dense_acc"] = ok["method"].map(ok[ok["level"] == 0].groupby("method")["test_acc"].mean())
    base = alt.Chart(ok)
    line = base.mark_line(point=True, opacity=0.8).encode(
        x=alt.X("density:Q", scale=alt.Scale(type="log", reverse=True, nice=False),
                title="density (fraction of weights kept)"),
        y=alt.Y("test_acc:Q", title="test accuracy", scale=alt.Scale(zero=False)),
        color=alt.Color("schedule:N", title="rewind"),
        detail="run_id:N",
        tooltip=["run_id", "level", alt.Tooltip("density:Q", format=".4f"), alt.Tooltip("test_acc:Q", format=".4f"),
                 "schedule", "seed"],
    )
    rule = base.mark_rule(strokeDash=[4, 3], color="black").encode(y="mean(dense_acc):Q")
    return alt.layer(line, rule).properties(width=260, height=220).facet(
        facet=alt.Facet("method:N", title="accuracy vs density per method (dashed: dense baseline)"), columns=3
    )


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--margin", action="append", type=report.margin_arg, default=[], metavar="METRIC=VALUE",
                   help="replace a metric's declared equivalence margin (repeatable)")
    p.add_argument("--report-only", action="store_true", help="write the study report alone (no Pareto plots)")


def main(argv: list[str] | None = None) -> int:
    try:
        rows, out, args = cli_inputs(__doc__, argv, _options)
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    margins = dict(args.margin)
    if args.report_only:
        path = report.write_report(rows, out, margins)
        print(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB) and {out / 'report.md'}")
        return 0
    trials = final_rows(rows)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["method", "run_id", "level", "density", "test_acc", FIDELITY, "cam_iou", "cam_faithfulness", CONCEPT,
            "concept_weight_spearman", "pcbm_acc", "rewind", "rewind_step", "rewind_spec", "guidance_weight",
            "lambda_fid", "seed"]
    fronts = {fid: pareto_front(trials, "test_acc", fid) for fid in (FIDELITY, CONCEPT)}
    pd.concat([f[cols].assign(front=fid) for fid, f in fronts.items()]).to_csv(out / "pareto_front.csv", index=False)
    trials[cols].to_csv(out / "trials.csv", index=False)
    # Charts embed only the columns they draw: the per-row maps, concept lists and configs stay out of the
    # page (with them, 8 trials made a 12 MB pareto.html).
    light = rows[[c for c in rows.columns if c not in ("probe_cams", "top_concepts", "config_json")]]
    trials_light = trials[[c for c in cols if c in trials]]
    fc = alt.hconcat(*[front_chart(trials_light, f[cols], fid) for fid, f in fronts.items()
                       if trials[fid].notna().any()])
    lc = lth_chart(light)
    cc = curve_chart(light, CONCEPT, "concept overlap")
    banks = ", ".join(sorted(rows["concept_bank"].unique()))
    note = " (random CLIP weights: concept columns check the pipeline only)" if "/random" in banks else ""
    page = alt.vconcat(fc, lc, curve_chart(light, FIDELITY, "Grad-CAM ρ"), cc).properties(
        title=alt.Title(f"lthray sweep {rows['sweep'].iloc[0]}", subtitle=f"concept bank: {banks}{note}"))
    page.save(out / "pareto.html", inline=True)  # inline: the page works offline
    fc.save(out / "pareto.png", scale_factor=2)
    lc.save(out / "lth_trials.png", scale_factor=2)
    cc.save(out / "concept_curve.png", scale_factor=2)
    density_table(rows).to_csv(out / "by_density.csv", index=False, float_format="%.4f")
    report.write_report(rows, out, margins)  # the gallery and the concept shift are the report's (computed there once)
    diverged = rows.loc[rows["status"] != "ok", "run_id"].nunique()
    print(f"{len(trials)} trials ({diverged} diverged, left out), "
          f"{len(fronts[FIDELITY])} on the accuracy/CAM fronts -> {out} (study report: {out / 'report.html'})"
          + ("" if (out / "gallery.png").exists() else " (no gallery: data not on disk, or a search)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
