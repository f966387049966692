"""The driver's progress: one line per finished level (Ray's own tables are too coarse), each with how far
the sweep is (trials done / running / left) and an estimate of the time left; and the Optuna study with
its objectives named and each trial's run id, so optuna-dashboard shows names rather than values_0..2."""

from __future__ import annotations

import time
from typing import Any

from ray.tune import Callback
from ray.tune.search.optuna import OptunaSearch

from lthray.results import progress_line


def eta(elapsed: float, levels_done: int, levels_left: int) -> str:
    """'~N min left' from the mean wall time per finished level so far ('' before the first)."""
    if levels_done == 0 or levels_left <= 0:
        return ""
    left = elapsed / levels_done * levels_left
    return f"~{left / 3600:.1f} h left" if left >= 5400 else f"~{max(1, round(left / 60))} min left"


class LevelPrinter(Callback):
    """Prints each level as it finishes. `trials`: the sweep's trial count; `levels`: levels per trial
    (level 0 included) - the estimate counts a level a trial reused from another as done at once. The levels
    left are read from the trials (a finished trial has none; another has those after its last reported
    level), so a resumed sweep's estimate counts only what this driver still has to run."""

    def __init__(self, trials: int = 0, levels: int = 0) -> None:
        self.trials, self.levels, self.start, self.seen = trials, levels, time.monotonic(), 0
        self.last: dict[str, int] = {}  # trial id -> its last level reported to this driver

    def levels_left(self, trials: list) -> int:
        unfinished = [t for t in trials if t.status not in ("TERMINATED", "ERROR")]
        not_started = max(0, self.trials - len(trials))  # a searcher has not proposed them yet
        return (not_started * self.levels
                + sum(self.levels - (self.last[t.trial_id] + 1 if t.trial_id in self.last else 0) for t in unfinished))

    def status(self, trials: list) -> str:
        if not self.trials:
            return ""
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        running = sum(t.status == "RUNNING" for t in trials)
        left = self.levels_left(trials)
        return (f"  [{done}/{self.trials} trials done, {running} running, {self.trials - done - running} left"
                + (f"; {e}" if (e := eta(time.monotonic() - self.start, self.seen, left)) else "") + "]")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.seen += 1
        if isinstance(result.get("level"), int):
            self.last[trial.trial_id] = result["level"]
        print(f"[{trial.trial_id}] {progress_line(result)}{self.status(trials)}", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[{trial.trial_id}] errored (Ray retries it from its last level if failures remain)", flush=True)


class NamedOptunaSearch(OptunaSearch):
    """Ray Tune's OptunaSearch whose study names its objectives (Study.set_metric_names) and records each
    trial's run id (`run_id`) and Tune trial id as user attributes, for optuna-dashboard and for reading
    the study back against the result rows."""

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        if isinstance(self._metric, list):
            self._ot_study.set_metric_names(list(self._metric))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is not None and trial_id not in self._completed_trials:
            ot_trial.set_user_attr("tune_trial_id", trial_id)
            if result and result.get("run_id"):
                ot_trial.set_user_attr("run_id", result["run_id"])
        super().on_trial_complete(trial_id, result, error)
