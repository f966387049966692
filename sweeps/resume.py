"""Resuming a sweep: the results folder is the ground truth of what is finished.

Tune can come back short after a hard kill (trials it created after its last snapshot are forgotten on
restore) and a searcher may sample one config twice (one run_id, one set of rows), so the driver counts
complete configs in the results and tops up until the sweep has all of them.
"""

from __future__ import annotations

import json
from typing import Any

from lthray import results
from lthray.config import from_flat, run_id
from sweeps.presets import Preset, is_guided
from sweeps.store import SweepFolder


class ResumeMismatch(Exception):
    """The sweep folder was started with other settings."""


def sweep_meta(preset: Preset, num_samples: int, confirm_of: str | None = None) -> dict[str, Any]:
    """sweep.json: what a resume must match (preset, signature, num_samples), and what the analysis reads
    to tell a search from a grid and a confirm from either."""
    return {"preset": preset.name, "signature": preset.signature(), "num_samples": num_samples,
            "search": preset.search, **({"confirm_of": confirm_of} if confirm_of else {})}


def check_resume_matches(store: SweepFolder, meta: dict[str, Any]) -> None:
    old = json.loads(store.read_text("sweep.json"))
    for key in ("preset", "signature", "num_samples"):
        if old.get(key) != meta[key]:
            raise ResumeMismatch(
                f"cannot resume {store.dir}: its {key} was {old.get(key)!r}, now {meta[key]!r}; "
                "resume with the original flags or start a new sweep with --name")


# What Tuner.can_restore looks for: the CLI checks it before Ray is imported, the driver to restore.
TUNER_STATE = "tuner.pkl"


def has_state(store: SweepFolder) -> bool:
    """Is there a Tune experiment to restore in the sweep folder?"""
    return store.exists(TUNER_STATE)


def interrupted(grid: Any, preset: Preset) -> bool:
    """Did Ctrl+C stop the fit? Then some trial ended without error and unfinished (its last report
    is of a level before its last, and not a diverged one)."""
    for r in grid:
        if r.error is not None:
            continue
        m = r.metrics or {}
        levels = from_flat({**preset.base, **params_of(r.config or {})}).prune.levels
        level = m.get("level", -1)
        if not results.trial_finished(levels, set(range(level + 1)), m.get("status", "ok") != "ok"):
            return True
    return False


def tally(results_dir: str) -> tuple[set[str], list[dict[str, Any]]]:
    """(run_ids whose every level - or a diverged level - has a row, flat configs of the unfinished ones)."""
    rows = results.read(results_dir).select(["run_id", "level", "status", "config_json"]).to_pylist()
    by_run: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(r)
    done, partial = set(), []
    for rid, rs in by_run.items():
        flat = json.loads(rs[0]["config_json"])
        levels = from_flat(flat).prune.levels
        if results.trial_finished(levels, {r["level"] for r in rs}, any(r["status"] != "ok" for r in rs)):
            done.add(rid)
        else:
            partial.append(flat)
    return done, partial


def preset_params(preset: Preset, flat: dict[str, Any]) -> dict[str, Any]:
    """The searcher's parameters that reproduce a config (for points_to_evaluate)."""
    keys = list(preset.space) + (list(preset.guided_space) if is_guided(flat["prune.method"]) else [])
    return {k: flat[k] for k in keys}


def params_of(config: dict[str, Any]) -> dict[str, Any]:
    """A trial's sampled keys: Optuna gives them flat, the grid search as one 'params' dict."""
    return config.get("params", config)


def grid_left(preset: Preset, done: set[str]) -> list[dict[str, Any]]:
    """The grid's combinations whose run has not finished (unfinished ones continue from their checkpoints)."""
    return [p for p in preset.grid() if run_id(from_flat({**preset.base, **p})) not in done]
