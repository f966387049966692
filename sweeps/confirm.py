"""`--confirm NAME`: re-run the Pareto set of the finished search NAME with fresh seeds, paired with IMP.

A search point is a single trial, and the front of many single noisy trials is biased upwards (the
winner's curse). The confirm takes each front config (from the search's result rows, as the report
does), and IMP at the same schedule, scope and rewind (g = 0, lambda_fid = 0), and runs every one of them
at N seeds the search never used, as a paired grid in the sweep NAME-confirm. Its report then gives each
front config's paired difference from IMP at the target density.
"""

from __future__ import annotations

import json
from typing import Any

from analysis.front import last_levels, pareto_set
from lthray import results
from lthray.presets import Preset
from sweeps import resume
from sweeps.store import SweepFolder

# What a front config's IMP partner resets: the method and its own knobs. Everything else (data,
# training, schedule, scope, rewind point) stays, so the pair differs only in what guidance changes.
IMP = {"prune.method": "imp", "prune.guidance_weight": 0.0, "prune.lambda_fid": 0.0}


class ConfirmError(Exception):
    """The search to confirm is missing or unfinished: one line, exit code 2."""


def front_configs(search: SweepFolder) -> tuple[list[dict[str, Any]], set[int], dict[str, Any]]:
    """(flat configs of the search's Pareto set, the seeds the search used, its sweep.json) or ConfirmError."""
    if not search.exists("sweep.json"):
        raise ConfirmError(f"--confirm {search.name}: no sweep at {search.dir}; run the search first "
                           f"(python sweeps/imp_vs_guided.py --name {search.name})")
    meta = json.loads(search.read_text("sweep.json"))
    if meta.get("search", "optuna") != "optuna" or meta.get("confirm_of"):
        raise ConfirmError(f"--confirm {search.name}: {search.dir} is a {meta.get('search')} sweep, not an Optuna "
                           "search; confirm a search made with --search optuna")
    rdir = search.path("results")
    try:
        done, _ = resume.tally(rdir)
    except results.ResultsError as e:
        raise ConfirmError(f"--confirm {search.name}: {e}") from None
    if len(done) < meta["num_samples"]:
        raise ConfirmError(f"--confirm {search.name}: the search is unfinished ({len(done)}/{meta['num_samples']} "
                           f"trials complete); finish it first with --name {search.name} --resume")
    rows = results.read(rdir).to_pandas()
    front = pareto_set(last_levels(rows[rows["run_id"].isin(done)]))
    if front.empty:
        raise ConfirmError(f"--confirm {search.name}: no trial of the search finished without diverging")
    return [json.loads(c) for c in front["config_json"]], set(int(s) for s in rows["seed"]), meta


def confirm_preset(search: SweepFolder, seeds: int) -> Preset:
    """The paired grid: every front config and its IMP partner, at `seeds` seeds the search never used."""
    front, used, meta = front_configs(search)
    fresh = [s for s in range(seeds + len(used)) if s not in used][:seeds]
    points: list[dict[str, Any]] = []
    for flat in front + [{**f, **IMP} for f in front]:
        for s in fresh:
            p = {**flat, "seed": s}
            if p not in points:  # two front configs at one schedule share their IMP runs
                points.append(p)
    return Preset(f"{search.name}-confirm", base={}, space={}, num_samples=len(points), search="grid",
                  points=tuple(points), about=f"confirm of {search.name}'s Pareto set ({meta['preset']})")
