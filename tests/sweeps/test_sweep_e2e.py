"""The sweep end to end through Ray: into Parquet, killed with SIGKILL and resumed, then analysed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lthray import results

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "sweeps" / "imp_vs_guided.py"
pytestmark = pytest.mark.slow


def sweep_cmd(storage: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--preset", "smoke", "--storage", str(storage), "--name", "t", *extra]


def env() -> dict[str, str]:
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
            "RAY_ADDRESS": ""}


def rows_by_key(results_dir: Path) -> dict[tuple[str, int], int]:
    counts: dict[tuple[str, int], int] = {}
    for r in results.read(results_dir).to_pylist():
        key = (r["run_id"], r["level"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process it started (Ray's GCS, raylet, workers), by PID."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    for p in [psutil.Process(proc.pid), *family] if proc.poll() is None else family:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(family, timeout=30)


def test_smoke_sweep_writes_every_level_once_and_the_analysis_plots_it(tmp_path):
    out = subprocess.run(sweep_cmd(tmp_path, "--num-samples", "2"), env=env(), capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "level 2" in out.stdout  # progress: one line per finished level
    counts = rows_by_key(tmp_path / "t" / "results")
    assert len({rid for rid, _ in counts}) == 2
    assert sorted({lvl for _, lvl in counts}) == [0, 1, 2]
    assert len(counts) == 2 * 3 and set(counts.values()) == {1}
    table = results.read(tmp_path / "t" / "results").to_pandas()
    assert (table["sweep"] == "t").all() and table["trial_id"].nunique() == 2
    assert table.groupby("run_id")["density"].min().round(3).tolist() == [0.25, 0.25]

    an = subprocess.run([sys.executable, "-m", "analysis.pareto", "--results", str(tmp_path / "t" / "results"),
                         "--out", str(tmp_path / "an")], env=env(), capture_output=True, text=True, cwd=ROOT,
                        timeout=300)
    assert an.returncode == 0, an.stderr
    png = tmp_path / "an" / "pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "<script" in (tmp_path / "an" / "pareto.html").read_text()


def test_a_sweep_killed_mid_run_resumes_with_every_row_exactly_once(tmp_path):
    n, levels = 3, 3
    cmd = sweep_cmd(tmp_path, "--num-samples", str(n), "--max-concurrent", "2",
                    "--set", f"prune.levels={levels}", "--set", "train.epochs=3")
    proc = subprocess.Popen(cmd, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    res = tmp_path / "t" / "results"
    try:
        deadline = time.time() + 240
        while len(results.result_files(res)) < 3:  # some levels done, most not: mid-run
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "the sweep wrote no rows in time"
            time.sleep(0.2)
    finally:
        kill_tree(proc)
    written = len(results.result_files(res))
    assert written < n * (levels + 1), "the kill came too late to test a resume"

    out = subprocess.run([*cmd, "--resume"], env=env(), capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "resuming sweep" in out.stdout
    counts = rows_by_key(res)
    assert len({rid for rid, _ in counts}) == n  # exactly num-samples trials
    assert set(counts.values()) == {1} and len(counts) == n * (levels + 1)
    assert not [p for p in res.iterdir() if p.name.startswith(".")]  # no temp file left visible
