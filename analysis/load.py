"""Load results into pandas: all rows, and the final level of each trial."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import pandas as pd

from lthray import results, storage
from lthray.config import RENAMED


class AnalysisError(Exception):
    """Bad input to the analysis: one line for the user, exit code 2."""


def newest_results(root: str | Path = "runs") -> Path:
    """The results folder of the most recently modified sweep under `root`."""
    dirs = [p for p in Path(root).glob("*/results") if p.is_dir()]
    if not dirs:
        raise AnalysisError(f"no sweep results under {Path(root).resolve()}; run a sweep or pass --results DIR")
    return max(dirs, key=lambda p: p.stat().st_mtime)


def load_rows(results_dir: str | Path) -> pd.DataFrame:
    """Every row, one per (run_id, level), from a folder or a storage URI (s3://...).

    Duplicates would be a bug upstream, so they are an error."""
    d = str(results_dir) if storage.is_uri(results_dir) else Path(results_dir)
    if isinstance(d, Path) and not d.is_dir():
        raise AnalysisError(f"--results={d} is not a folder; expected a sweep's results folder")
    try:
        df = results.read(d).to_pandas()
    except results.ResultsError as e:
        raise AnalysisError(str(e)) from None
    if df.empty:
        raise AnalysisError(f"--results={d} holds no result rows (*.parquet); has the sweep finished a level?")
    dup = df.duplicated(["run_id", "level"])
    if dup.any():
        raise AnalysisError(f"{d}: {int(dup.sum())} duplicated (run_id, level) rows")
    df["method"] = df["method"].replace(RENAMED["prune.method"])  # rows written before a rename
    df = with_extra_metrics(df.sort_values(["run_id", "level"]).reset_index(drop=True))
    df.attrs["results"] = str(results_dir)  # where the mask files live (lthray.mask_files)
    return df


def with_extra_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with each registered metric's `extra_metrics` entry as a column of its own (NaN where a
    row has none), so the analysis treats a plugin's metric like a built-in one."""
    if "extra_metrics" not in df:
        return df
    extra = [dict(v) if v is not None else {} for v in df["extra_metrics"]]
    names = sorted({k for e in extra for k in e} - set(df.columns))
    return df.assign(**{n: [e.get(n, math.nan) for e in extra] for n in names})


def sweep_meta(results_dir: str | Path | None) -> dict:
    """The sweep.json beside a results folder (STORAGE/NAME/sweep.json): what kind of sweep made the
    rows (search, grid, confirm_of). {} when there is none (rows copied elsewhere, older sweeps)."""
    import json

    if not results_dir:
        return {}
    where = f"{str(results_dir).rstrip('/').rsplit('/', 1)[0]}/sweep.json"
    try:
        return json.loads(storage.read_text(where)) if storage.exists(where) else {}
    except (OSError, ValueError):
        return {}


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The last level of each run that trained without diverging (diverged runs are left out)."""
    bad = set(df.loc[df["status"] != "ok", "run_id"])
    ok = df[~df["run_id"].isin(bad)]
    return ok.loc[ok.groupby("run_id")["level"].idxmax()].reset_index(drop=True)


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad option as one line (AnalysisError: 'error: --margin ...', exit 2)
    instead of a usage block."""

    def error(self, message: str) -> NoReturn:
        raise AnalysisError(message.removeprefix("argument "))


def cli_inputs(doc: str | None, argv: list[str] | None,
               more: Callable[[argparse.ArgumentParser], None] | None = None
               ) -> tuple[pd.DataFrame, Path, argparse.Namespace]:
    """--results and --out of an analysis command (and the options `more` adds): (rows, output folder,
    the parsed arguments); AnalysisError with one line."""
    p = _Parser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default=None, help="a sweep's results folder (default: newest under ./runs)")
    p.add_argument("--out", default=None, help="output folder (default: the sweep's folder / analysis)")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="the sweep's plugin modules (lthray.plugins): its models and data, for the gallery")
    if more is not None:
        more(p)
    args = p.parse_args(argv)
    from lthray.plugins import PluginError, load_all

    try:
        load_all(args.plugin)
    except PluginError as e:
        raise AnalysisError(str(e)) from None
    results_dir = args.results or newest_results()
    rows = load_rows(results_dir)
    if args.out is None and "://" in str(results_dir):
        raise AnalysisError(f"--results={results_dir} is remote: pass --out, a local folder for the output")
    out = Path(args.out) if args.out else Path(results_dir).parent / "analysis"
    if out.exists() and not out.is_dir():
        raise AnalysisError(f"--out={out} is a file; expected a folder")
    return rows, out, args
