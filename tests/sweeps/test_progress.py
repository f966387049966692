from types import SimpleNamespace

from sweeps.progress import LevelPrinter, eta


def _t(trial_id: str, status: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, status=status)


def test_the_estimate_counts_only_the_levels_this_driver_still_runs():
    """A resumed sweep: 2 of 4 trials finished before the restart, one resumed mid-way (its level 2 reported
    now), one not started; 4 levels a trial. Left: 1 level of the resumed trial + 4 of the new one."""
    p = LevelPrinter(trials=4, levels=4)
    trials = [_t("a", "TERMINATED"), _t("b", "TERMINATED"), _t("c", "RUNNING"), _t("d", "PENDING")]
    p.on_trial_result(0, trials, trials[2], {"level": 2})
    assert p.levels_left(trials) == 1 + 4
    assert p.levels_left(trials[:3]) == 1 + 4  # "d" not yet proposed by the searcher: counted all the same
    assert p.status(trials).startswith("  [2/4 trials done, 1 running, 1 left")


def test_eta_is_the_mean_level_time_times_the_levels_left():
    assert eta(600.0, 10, 5) == "~5 min left" and eta(10.0, 0, 5) == "" and eta(3600.0, 1, 2) == "~2.0 h left"
