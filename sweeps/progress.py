"""One progress line per finished level, from the driver (Ray's own tables are too coarse)."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback


class LevelPrinter(Callback):
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        acc, cam = result.get("test_acc"), result.get("cam_spearman")
        print(
            f"[{trial.trial_id}] {result.get('method', '?'):>7} level {result.get('level')} "
            f"density {result.get('density', float('nan')):.4f}  acc {acc:.4f}  cam_rho {cam:.3f}  "
            f"{result.get('status', '')}",
            flush=True,
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[{trial.trial_id}] errored (Ray retries it from its last level if failures remain)", flush=True)
