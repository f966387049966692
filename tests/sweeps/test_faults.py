"""Fault injection with real processes: SIGKILL of the driver at several points, SIGKILL of a trial
worker, a diverging trial, Ctrl+C. Afterwards every (run_id, level) row exists exactly once."""

from __future__ import annotations

import json
import signal

import psutil
import pytest

from analysis import pareto

pytestmark = pytest.mark.slow


def hidden(sweep) -> list[str]:
    return [p.name for p in sweep.results.rglob("*") if p.name.startswith(".")] if sweep.results.exists() else []


@pytest.mark.parametrize("point", ["level0", "between_levels", "during_write"])
def test_driver_sigkill_then_resume_keeps_every_row_exactly_once(sweep, point):
    n, levels = 3, 2
    flags = ["--num-samples", str(n), "--max-concurrent", "2", "--set", f"prune.levels={levels}"]
    env = {"LTHRAY_FAULT_WRITE_PAUSE": "2"} if point == "during_write" else {}
    proc = sweep.start(*flags, **env)
    trial_dirs = lambda: list((sweep.storage / sweep.name).glob("trainable_*"))  # noqa: E731
    if point == "level0":
        sweep.wait_for(proc, lambda: bool(trial_dirs()), "a trial to start")
    elif point == "between_levels":
        sweep.wait_for(proc, lambda: sweep.rows() >= 3, "three rows")
    else:
        sweep.wait_for(proc, lambda: bool(hidden(sweep)), "a Parquet file being written")
    sweep.kill_tree(proc)
    before = sweep.rows()
    if point == "level0":
        assert before == 0, "killed too late to test level 0"
    assert before < n * (levels + 1), "killed too late: nothing left to resume"
    import pyarrow.dataset as ds

    if before:
        assert ds.dataset(str(sweep.results)).to_table().num_rows == before  # readers see only whole rows

    out = sweep.run(*flags, "--resume")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = sweep.counts()
    assert len({rid for rid, _ in counts}) == n
    assert set(counts.values()) == {1} and len(counts) == n * (levels + 1)
    assert hidden(sweep) == []


def test_a_killed_trial_worker_is_retried_from_its_last_level(sweep):
    levels = 4
    flags = ["--num-samples", "1", "--set", f"prune.levels={levels}", "--max-failures", "2"]
    proc = sweep.start(*flags)
    sweep.wait_for(proc, lambda: sweep.rows() >= 2, "two levels")
    workers = [p for p in sweep.family(proc) if "ImplicitFunc" in " ".join(p.cmdline())]
    assert len(workers) == 1
    rows_at_kill = sweep.rows()
    workers[0].send_signal(signal.SIGKILL)
    assert proc.wait(timeout=400) == 0, proc.stdout.read().decode()[-3000:]
    assert not psutil.pid_exists(workers[0].pid) or workers[0].status() == psutil.STATUS_ZOMBIE
    counts = sweep.counts()
    assert len(counts) == levels + 1 and set(counts.values()) == {1}
    # the retry (a new worker pid) started from the last checkpointed level: at most one level redone
    (trial_dir,) = (sweep.storage / sweep.name).glob("trainable_*")
    reports = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines()]
    pids = list(dict.fromkeys(r["pid"] for r in reports))
    assert len(pids) == 2, "the trial was not retried in a new worker"
    retry_levels = [r["level"] for r in reports if r["pid"] == pids[1]]
    assert retry_levels == list(range(retry_levels[0], levels + 1))
    assert retry_levels[0] >= rows_at_kill - 1
    steps = {r["level"]: r["train_steps"] for r in reports}
    redone = sum(steps[lv] for lv in retry_levels if lv < rows_at_kill)
    assert redone <= max(steps.values())  # lost at most one level's training steps


def test_a_diverging_trial_is_marked_and_the_sweep_goes_on(sweep, tmp_path):
    flags = ["--num-samples", "4", "--choice", "train.lr=0.05,10.0", "--set", "train.weight_decay=0.5",
             "--seed", "1"]
    out = sweep.run(*flags)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    from lthray import results

    rows = results.read(sweep.results).to_pandas()
    cfg_lr = rows["config_json"].map(lambda c: json.loads(c)["train.lr"])
    assert set(cfg_lr) == {0.05, 10.0}, "the sampler did not try both learning rates"
    diverged = rows[rows["status"] == "diverged"]
    assert len(diverged) >= 1 and (cfg_lr[diverged.index] == 10.0).all()
    assert diverged["test_acc"].isna().all()
    assert rows["run_id"].nunique() == 4  # the sweep went on to every trial
    assert pareto.main(["--results", str(sweep.results), "--out", str(tmp_path / "an")]) == 0
    trials = (tmp_path / "an" / "trials.csv").read_text()
    assert not any(rid in trials for rid in diverged["run_id"])  # left out of the fronts


def test_ctrl_c_saves_state_and_resume_continues(sweep):
    flags = ["--num-samples", "3", "--max-concurrent", "1", "--set", "prune.levels=3"]
    proc = sweep.start(*flags)
    sweep.wait_for(proc, lambda: sweep.rows() >= 2, "two rows")
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=120)
    text = proc.stdout.read().decode()
    assert rc == 130, text[-3000:]
    assert "--resume" in text.splitlines()[-1]
    assert sweep.rows() < 3 * 4
    out = sweep.run(*flags, "--resume")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = sweep.counts()
    assert len(counts) == 3 * 4 and set(counts.values()) == {1}


def test_a_second_driver_is_refused_and_a_killed_drivers_lock_taken_over(sweep):
    flags = ["--num-samples", "3", "--max-concurrent", "1", "--set", "prune.levels=3"]
    first = sweep.start(*flags)
    lock = sweep.storage / sweep.name / "driver.lock"
    # the lock is taken before Ray starts; wait until the sweep is really under way (a row written)
    sweep.wait_for(first, lambda: lock.exists() and lock.read_text().strip() != "" and sweep.rows() >= 1,
                   "the first driver's lock and a row")
    second = sweep.run(*flags, timeout=120)
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith("error: sweep ") and f"driver PID {first.pid} on host" in last, last
    assert first.poll() is None  # the first driver is untouched and still running
    sweep.kill_tree(first)  # kill -9: the lock file still names it, its flock is gone
    assert json.loads(lock.read_text())["pid"] == first.pid
    out = sweep.run(*flags)  # the same command again: it resumes (and takes the lock over)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    took = [ln for ln in (out.stdout + out.stderr).splitlines() if "taking over the lock" in ln]
    assert len(took) == 1 and f"driver PID {first.pid}" in took[0] and "no longer running" in took[0]
    counts = sweep.counts()
    assert len(counts) == 3 * 4 and set(counts.values()) == {1}
    assert lock.read_text() == ""  # released at the end


def test_a_full_disk_fails_the_trial_clearly_and_resume_completes_the_sweep(sweep):
    flags = ["--num-samples", "1", "--max-failures", "0", "--set", "prune.levels=2"]
    proc = sweep.start(*flags, LTHRAY_FAULT_FSYNC="ENOSPC:__L001.parquet")  # level 1's mask file fails
    assert proc.wait(timeout=400) == 1  # the sweep could not finish its trial
    text = proc.stdout.read().decode()
    assert "could not write" in text and "No space left on device (ENOSPC)" in text, text[-3000:]
    assert sweep.rows() == 1 and hidden(sweep) == []  # level 0 only; nothing partial
    out = sweep.run(*flags, "--resume")
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = sweep.counts()
    assert len(counts) == 3 and set(counts.values()) == {1}
    from lthray import mask_files

    assert len(mask_files.read(sweep.results)) == 3 and hidden(sweep) == []
