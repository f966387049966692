"""The Pareto set of a search: trials no other trial beats on every objective at once.

A pure function over final rows, shared by the search report and by `--confirm`, which re-runs exactly
this set (so the report and the confirm can never disagree about which configs are "the front")."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from lthray.config import from_flat

# The search's three objectives, all maximised, all read at the target density (sweeps/trainable.py).
OBJECTIVES = ("test_acc", "cam_spearman", "concept_topk_overlap")


def last_levels(rows: pd.DataFrame) -> pd.DataFrame:
    """Each finished run's row at its schedule's last level (prune.levels of its config): the target
    density. A run that diverged, or has not reached its last level yet, has no such row (a comparison
    at an earlier level would be at another density)."""
    ok = rows[rows["status"] == "ok"]
    bad = set(rows.loc[rows["status"] != "ok", "run_id"])
    levels = ok["config_json"].map(lambda c: from_flat(json.loads(c)).prune.levels)
    return ok[(ok["level"] == levels) & ~ok["run_id"].isin(bad)].reset_index(drop=True)


def nondominated(values: np.ndarray) -> np.ndarray:
    """Bool per row of an (n, k) array, every column maximised: True where no other row is >= on every
    column and > on one. Ties (equal rows) are all kept. O(n^2 k): a search has at most a few hundred
    trials, and scipy/sklearn have no Pareto filter."""
    v = np.asarray(values, dtype=float)
    keep = np.ones(len(v), dtype=bool)
    for i in range(len(v)):
        ge = (v >= v[i]).all(axis=1)
        gt = (v > v[i]).any(axis=1)
        keep[i] = not (ge & gt).any()
    return keep


def pareto_front(df: pd.DataFrame, x: str, y: str, by: str | None = "method") -> pd.DataFrame:
    """Rows not dominated in (x, y), both maximised, within each group of `by`; sorted by x. Of equal
    points one is kept (a front is drawn as a line)."""
    if by is not None:
        parts = [pareto_front(g, x, y, None) for _, g in df.groupby(by, sort=True)]
        return pd.concat(parts, ignore_index=True) if parts else df.iloc[:0]
    d = df.dropna(subset=[x, y]).drop_duplicates(subset=[x, y])
    return d[nondominated(d[[x, y]].to_numpy())].sort_values(x).reset_index(drop=True)


def pareto_set(final: pd.DataFrame, objectives: tuple[str, ...] = OBJECTIVES) -> pd.DataFrame:
    """The rows of `final` (one per trial, at one density) on the Pareto front, best accuracy first.
    Rows with a missing objective (a diverged trial) are never on it."""
    d = final.dropna(subset=list(objectives))
    if d.empty:
        return d
    return d[nondominated(d[list(objectives)].to_numpy())].sort_values(
        list(objectives), ascending=False).reset_index(drop=True)
