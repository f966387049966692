"""One progress line per finished level, from the driver (Ray's own tables are too coarse)."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from lthray.results import progress_line


class LevelPrinter(Callback):
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        print(f"[{trial.trial_id}] {progress_line(result)}", flush=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[{trial.trial_id}] errored (Ray retries it from its last level if failures remain)", flush=True)
