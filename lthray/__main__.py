"""Run one trial without Ray: `python -m lthray --set prune.levels=8 --set prune.rewind_step=1ep`.

Prints one line per level. Rows go to --results, the trial's checkpoint to --workdir/RUN_ID, so running
the same command again continues (or, if finished, returns at once): a run never redoes finished work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lthray.config import ConfigError, from_flat, parse_value, run_id
from lthray.lottery import run_trial


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lthray", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config value, e.g. --set train.epochs=6 (repeatable; see lthray/config.py)")
    p.add_argument("--workdir", default="runs/single", help="checkpoints live in WORKDIR/RUN_ID")
    p.add_argument("--results", default=None, help="Parquet rows (default WORKDIR/results)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    args = p.parse_args(argv)
    flat = {}
    for item in args.overrides:
        key, eq, raw = item.partition("=")
        if not eq:
            print(f"error: --set {item!r} is not KEY=VALUE (e.g. train.epochs=6)", file=sys.stderr)
            return 2
        flat[key] = parse_value(raw)
    try:
        cfg = from_flat(flat)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rid = run_id(cfg)
    results = Path(args.results) if args.results else Path(args.workdir) / "results"

    def show(row: dict) -> None:
        print(f"{rid} level {row['level']:2d} density {row['density']:.4f} acc {row['test_acc'] or 0:.4f} "
              f"cam_rho {row['cam_spearman'] or 0:.3f} iou {row['cam_iou'] or 0:.3f} {row['status']}", flush=True)

    run_trial(cfg, Path(args.workdir) / rid, results, sweep="single", on_level=show)
    return 0


if __name__ == "__main__":
    sys.exit(main())
