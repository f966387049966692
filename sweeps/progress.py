"""One progress line per finished level, from the driver (Ray's own tables are too coarse)."""

from __future__ import annotations

from typing import Any

from ray.tune import Callback


class LevelPrinter(Callback):
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        acc, cam, con = result.get("test_acc"), result.get("cam_spearman"), result.get("concept_topk_overlap")
        print(
            f"[{trial.trial_id}] {result.get('method', '?'):>14} g={result.get('guidance_weight', 0):.2f} "
            f"level {result.get('level')} density {result.get('density', float('nan')):.4f}  acc {acc:.4f}  "
            f"cam_rho {cam:.3f}  concepts {con:.2f}  {result.get('status', '')}",
            flush=True,
        )

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"[{trial.trial_id}] errored (Ray retries it from its last level if failures remain)", flush=True)
