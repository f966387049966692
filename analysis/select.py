"""`lthray select`: per run, the sparsest level whose ticket keeps its dense model's accuracy (within a margin)
and whose explanations stay within their noise floor: the seed paper's "monitor" as a command.

Per run, so per seed: a screen of one network against its own dense model and its own seed's floor, not a
test over seeds (the report's claims are those). The floor of a metric is the same seed's
same-initialisation copy's value (`floor_` columns: what another data order alone moves it by), or, where a
sweep has none, the design's seed-to-seed floor (analysis.floors).

    lthray select --results runs/fashion/results [--margin 0.01] [--metric cam_spearman --metric lrp_spearman]
                  [--export DIR] [--format safetensors]
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from analysis import floors, stats
from analysis.load import AnalysisError, load_rows
from lthray import plugins
from lthray.config_docs import OneLineParser

DEFAULT_METRICS = ("cam_spearman", "lrp_spearman")


def floor_of(rows: pd.DataFrame, fl: pd.DataFrame, metric: str) -> pd.Series:
    """Per row, the floor its `metric` is read against: its seed's same-initialisation value, else its
    design's seed-to-seed floor (nan where neither was measured)."""
    d = stats.with_design(rows)
    dense = d[d["level"] == 0].set_index("run_id")
    same = f"floor_{metric}"
    out = d["run_id"].map(dense[same]) if same in dense else pd.Series(np.nan, index=d.index)
    seed = fl[(fl["metric"] == metric) & (fl["kind"] == "seed")].set_index("design")["floor"] if not fl.empty else {}
    return out.astype(float).fillna(d["design"].map(seed).astype(float))


def select(rows: pd.DataFrame, margin: float = 0.01, metrics: tuple[str, ...] = DEFAULT_METRICS) -> pd.DataFrame:
    """One row per run that has a qualifying pruned level: the sparsest such level, its accuracy against its
    dense model's, and each metric against its floor."""
    ok = rows[rows["status"] == "ok"]
    metrics = tuple(m for m in metrics if m in ok and ok[m].notna().any())
    fl = floors.floors(ok)
    d = ok.assign(dense_acc=ok["run_id"].map(ok[ok["level"] == 0].set_index("run_id")["test_acc"]),
                  **{f"{m}_floor": floor_of(ok, fl, m) for m in metrics})
    keep = (d["level"] > 0) & (d["test_acc"] >= d["dense_acc"] - margin)
    for m in metrics:
        keep &= d[m] >= d[f"{m}_floor"]
    picked = d[keep].sort_values(["run_id", "density"]).groupby("run_id").head(1)
    cols = ["run_id", "method", "guidance_weight", "seed", "level", "density", "test_acc", "dense_acc",
            *[c for m in metrics for c in (m, f"{m}_floor")]]
    return picked[cols].sort_values(["method", "seed"]).reset_index(drop=True)


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="lthray select", description=__doc__)
    p.add_argument("--results", required=True, help="a sweep's results folder")
    p.add_argument("--margin", type=float, default=0.01, help="accuracy a ticket may lose against its dense model "
                   "(default 0.01: one point)")
    p.add_argument("--metric", action="append", default=None, help="an explanation metric that must stay within "
                   f"its floor (repeatable; default {', '.join(DEFAULT_METRICS)})")
    p.add_argument("--export", default=None, metavar="DIR", help="also export each selected ticket to DIR/RUN__LNNN")
    p.add_argument("--format", default="safetensors", help="the export's format (safetensors, pt or onnx)")
    plugins.add_flag(p)
    args = p.parse_args(argv)
    if not plugins.load_for_command(args.plugin):
        return 2
    from lthray import metrics as registry
    from lthray.tickets import FORMATS, TicketError, export

    unknown = [m for m in args.metric or () if m not in registry.METRICS]
    if unknown or not 0 <= args.margin < 1 or args.format not in FORMATS:
        what = (f"--metric={unknown[0]!r} is not a metric (lthray.metrics)" if unknown else
                f"--margin={args.margin} is not in [0, 1)" if not 0 <= args.margin < 1 else
                f"--format={args.format!r} is not one of {list(FORMATS)}")
        print(f"error: {what}", file=sys.stderr)
        return 2
    try:
        rows = load_rows(args.results)
    except AnalysisError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = select(rows, args.margin, tuple(args.metric or DEFAULT_METRICS))
    if table.empty:
        print(f"no run has a pruned level within {args.margin} of its dense accuracy whose explanations stay within "
              "their floor")
        return 0
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.export:
        try:
            for r in table.itertuples():
                export(args.results, r.run_id, int(r.level), args.format, f"{args.export}/{r.run_id}__L{r.level:03d}")
        except TicketError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"exported {len(table)} tickets to {args.export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
