"""Run one trial without Ray: `python -m lthray --set prune.levels=8 --set prune.rewind_step=1ep`.

Prints one line per level. Rows go to --results, the trial's checkpoint to --workdir/RUN_ID, so running
the same command again continues (or, if finished, returns at once): a run never redoes finished work.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import torch

from lthray import data, schedule, tracking
from lthray.config import ConfigError, TrialConfig, parse_override, run_id, to_flat
from lthray.explain.concepts import ConceptBankUnavailable
from lthray.results import progress_line
from lthray.tracking import TRACKERS
from lthray.train import PROGRESS
from lthray.trial import run_trial
from lthray.validate import checked_config


def parser() -> argparse.ArgumentParser:
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
    p.add_argument("--log", choices=sorted(TRACKERS), action="append", default=[],
                   help="also log each level's metrics to an experiment tracker (local stores under WORKDIR: "
                        "mlflow.db, tensorboard/; wandb offline unless WANDB_MODE says otherwise); repeatable")
    p.add_argument("--quiet", action="store_true", help="one line per level, no progress inside a level")
    return p


def checked(args: argparse.Namespace) -> TrialConfig | None:
    """The trial's config, every input checked before anything is written (plugins, preset, values, the data,
    the concept model, the trackers); None after printing the one-line error."""
    from lthray.explain.concept_sources import check_available
    from lthray.plugins import PluginError, load_all
    from lthray.presets import PRESETS

    try:
        load_all(args.plugin)
        if args.preset not in PRESETS:
            raise ConfigError(f"--preset={args.preset!r} is not one of {sorted(PRESETS)}")
        cfg = checked_config({**PRESETS[args.preset].base, **dict(parse_override(item) for item in args.overrides)})
        loaded = data.load(cfg.data.dataset, cfg.data.probe_size, "cpu", cfg.data.train_size)  # missing: exit 2 now
        schedule.check_loaded(cfg, len(loaded.train_x))  # files of another size than the schedule counts: exit 2
        check_available(cfg.concepts)  # a missing concept model: exit 2 before anything is written
        tracking.check(args.log)
    except (PluginError, ConfigError, data.DataUnavailableError, ConceptBankUnavailable,
            tracking.TrackerUnavailable) as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = checked(args)
    if cfg is None:
        return 2
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    rid = run_id(cfg)
    results = Path(args.results) if args.results else Path(args.workdir) / "results"

    trackers = tracking.open_all(args.log, rid, args.workdir, to_flat(cfg)) if args.log else []

    def on_level(row: dict[str, Any]) -> None:
        print(f"{rid}  {progress_line(row)}", flush=True)
        for t in trackers:
            t.log(tracking.metrics_of(row), step=row["level"])

    token = PROGRESS.set(None if args.quiet else Progress(sys.stderr))
    try:
        run_trial(cfg, Path(args.workdir) / rid, results, sweep="single", on_level=on_level)
    finally:
        PROGRESS.reset(token)
        for t in trackers:
            t.close()
    return 0


class Progress:
    """Progress inside a level on stderr: each training call's share done, its time and the time it has
    left; redrawn in place on a terminal, a line a quarter otherwise (a log file stays short)."""

    def __init__(self, out: TextIO) -> None:
        self.out, self.tty, self.t0, self.quarter = out, out.isatty(), time.perf_counter(), 0

    def __call__(self, done: int, total: int) -> None:
        if done == 0:  # a training call begins
            self.t0, self.quarter = time.perf_counter(), 0
            return
        spent = time.perf_counter() - self.t0
        line = (f"  training {done}/{total} steps ({100 * done / total:.0f}%), {spent:.0f} s, "
                f"~{spent * (total - done) / max(done, 1):.0f} s left")
        if self.tty:
            print(f"\r{line}\033[K", end="\n" if done == total else "", file=self.out, flush=True)
        elif 4 * done // total > self.quarter:
            self.quarter = 4 * done // total
            print(line, file=self.out, flush=True)


if __name__ == "__main__":
    sys.exit(main())
