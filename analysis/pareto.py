"""Pareto fronts of final accuracy against explanation fidelity, and the classic LTH curve.

    python -m analysis.pareto [--results runs/NAME/results] [--out DIR]

Writes DIR/pareto.html (self-contained), DIR/pareto.png, DIR/lth_curve.png, DIR/pareto_front.csv
(the non-dominated trials per method) and DIR/trials.csv (every trial's final level).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import altair as alt
import numpy as np
import pandas as pd

from analysis.load import AnalysisError, final_rows, load_rows, newest_results

FIDELITY = "cam_spearman"


def pareto_front(df: pd.DataFrame, x: str, y: str, by: str | None = "method") -> pd.DataFrame:
    """Rows not dominated in (x, y), both maximised, within each group of `by`; sorted by x."""
    if by is not None:
        parts = [pareto_front(g, x, y, None) for _, g in df.groupby(by, sort=True)]
        return pd.concat(parts, ignore_index=True) if parts else df.iloc[:0]
    d = df.dropna(subset=[x, y]).sort_values([x, y], ascending=[False, False])
    keep, best_y = [], -np.inf
    for idx, yv in zip(d.index, d[y], strict=True):
        if yv > best_y:  # strictly better y than every point with at least this x
            keep.append(idx)
            best_y = yv
    return d.loc[keep].sort_values(x).reset_index(drop=True)


def front_chart(trials: pd.DataFrame, front: pd.DataFrame) -> alt.Chart:
    base = alt.Chart(trials).encode(
        x=alt.X(f"{FIDELITY}:Q", title="Grad-CAM fidelity to dense (Spearman ρ)", scale=alt.Scale(zero=False)),
        y=alt.Y("test_acc:Q", title="final test accuracy", scale=alt.Scale(zero=False)),
    )
    points = base.mark_point(filled=True, size=70, opacity=0.85).encode(
        color=alt.Color("density:Q", scale=alt.Scale(type="log", scheme="viridis"), title="density"),
        shape=alt.Shape("method:N", title="method"),
        tooltip=["method", "run_id", "rewind", "rewind_step", "seed", alt.Tooltip("density:Q", format=".4f"),
                 alt.Tooltip("test_acc:Q", format=".4f"), alt.Tooltip(f"{FIDELITY}:Q", format=".3f")],
    )
    # the front of each method: a step line through its non-dominated trials, each ringed
    lines = alt.Chart(front).mark_line(strokeWidth=1.5, interpolate="step-after", color="#444").encode(
        x=f"{FIDELITY}:Q", y="test_acc:Q", strokeDash=alt.StrokeDash("method:N", title="Pareto front"),
        detail="method:N",
    )
    rings = alt.Chart(front).mark_point(size=260, strokeWidth=1.5, color="#444").encode(
        x=f"{FIDELITY}:Q", y="test_acc:Q", shape=alt.Shape("method:N")
    )
    return (lines + rings + points).properties(
        width=420, height=320, title="Accuracy vs explanation fidelity at each trial's final density"
    )


def lth_chart(rows: pd.DataFrame) -> alt.FacetChart:
    ok = rows[rows["status"] == "ok"].copy()
    ok["schedule"] = ok["rewind"] + " @ " + ok["rewind_step"].astype(str) + "it"
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
    return alt.layer(line, rule).properties(width=300, height=240).facet(
        column=alt.Column("method:N", title="accuracy vs density per method (dashed: dense baseline)")
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=None, help="a sweep's results folder (default: newest under ./runs)")
    p.add_argument("--out", default=None, help="output folder (default: the sweep's folder / analysis)")
    args = p.parse_args(argv)
    try:
        results_dir = Path(args.results) if args.results else newest_results()
        rows = load_rows(results_dir)
        out = Path(args.out) if args.out else results_dir.parent / "analysis"
        if out.exists() and not out.is_dir():
            raise AnalysisError(f"--out={out} is a file; expected a folder")
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    trials = final_rows(rows)
    front = pareto_front(trials, "test_acc", FIDELITY)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["method", "run_id", "level", "density", "test_acc", FIDELITY, "cam_iou", "cam_faithfulness", "rewind",
            "rewind_step", "guidance_weight", "seed"]
    front[cols].to_csv(out / "pareto_front.csv", index=False)
    trials[cols].to_csv(out / "trials.csv", index=False)
    fc, lc = front_chart(trials, front), lth_chart(rows)
    page = alt.vconcat(fc, lc).properties(title=f"lthray sweep {rows['sweep'].iloc[0]}")
    page.save(out / "pareto.html", inline=True)  # inline: the page works offline
    fc.save(out / "pareto.png", scale_factor=2)
    lc.save(out / "lth_curve.png", scale_factor=2)
    diverged = rows.loc[rows["status"] != "ok", "run_id"].nunique()
    print(f"{len(trials)} trials ({diverged} diverged, left out), {len(front)} on the fronts -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
