"""Run one trial without Ray: `python -m lthray --set prune.levels=8 --set prune.rewind_step=1ep`.

Prints one line per level. Rows go to --results, the trial's checkpoint to --workdir/RUN_ID, so running
the same command again continues (or, if finished, returns at once): a run never redoes finished work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from lthray import data
from lthray.config import ConfigError, parse_override, run_id
from lthray.explain.concepts import ConceptBankUnavailable
from lthray.results import progress_line
from lthray.trial import run_trial
from lthray.validate import checked_config


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lthray", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config value, e.g. --set train.epochs=6 (repeatable; see lthray/config.py)")
    p.add_argument("--preset", default="fashion", help="base config: a sweep preset's fixed values (default: "
                   "fashion, the reference study's; its method is imp unless --set prune.method=...)")
    p.add_argument("--workdir", default="runs/single", help="checkpoints live in WORKDIR/RUN_ID")
    p.add_argument("--results", default=None, help="Parquet rows (default WORKDIR/results)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="a module (dotted name or .py path) registering models/datasets (lthray.plugins); repeatable")
    args = p.parse_args(argv)
    from lthray.plugins import PluginError, load_all
    from lthray.presets import PRESETS

    try:
        load_all(args.plugin)
    except PluginError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    if args.preset not in PRESETS:
        print(f"error: --preset={args.preset!r} is not one of {sorted(PRESETS)}", file=sys.stderr)
        return 2
    try:
        cfg = checked_config({**PRESETS[args.preset].base, **dict(parse_override(item) for item in args.overrides)})
        data.load(cfg.data.dataset, cfg.data.probe_size, "cpu", cfg.data.train_size)  # missing data: exit 2 now
        from lthray.explain.concept_sources import check_available

        check_available(cfg.concepts)  # a missing concept model: exit 2 before anything is written
    except (ConfigError, data.DataUnavailableError, ConceptBankUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rid = run_id(cfg)
    results = Path(args.results) if args.results else Path(args.workdir) / "results"

    run_trial(cfg, Path(args.workdir) / rid, results, sweep="single",
              on_level=lambda row: print(f"{rid}  {progress_line(row)}", flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
