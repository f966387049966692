"""Losing a node mid-sweep loses nothing: on a two-node Ray cluster on loopback, the worker node's
raylet and every process under it (its trial's worker) are SIGKILLed while both nodes run a trial. Its
trial is retried on the remaining node from its last finished level, the sweep finishes, and every
(run, level) row exists exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from lthray import results

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _reports(sweep_dir: Path) -> dict[str, list[dict]]:
    out = {}
    for f in sweep_dir.glob("trainable_*/result.json"):
        lines = [ln for ln in f.read_text().splitlines() if ln.strip()]
        out[f.parent.name] = [json.loads(ln) for ln in lines]
    return out


def test_a_lost_node_is_survived_with_every_row_once(tmp_path, two_nodes):
    levels = 4
    sweep_dir = tmp_path / "n"
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "sweeps" / "imp_vs_guided.py"), "--preset", "smoke", "--num-samples", "2",
         "--max-concurrent", "2", "--max-failures", "3", "--set", f"prune.levels={levels}",
         "--address", two_nodes.address, "--storage", str(tmp_path), "--name", "n"],
        env=two_nodes.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 300
        # both trials running (one per node: each node has 1 CPU) and each has finished a level
        while not (len(r := _reports(sweep_dir)) == 2 and all(1 <= len(v) < levels + 1 for v in r.values())):
            assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
            assert time.time() < deadline, "timed out waiting for a trial on each node"
            time.sleep(0.2)
        victims = two_nodes.worker_node()
        assert any("raylet" in " ".join(p.cmdline()[:1]) for p in victims)
        for p in victims:
            try:
                p.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        rows_at_kill = len(results.result_files(sweep_dir / "results"))
        assert proc.wait(timeout=600) == 0, proc.stdout.read().decode()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    counts: dict[tuple[str, int], int] = {}
    for r in results.read(sweep_dir / "results").to_pylist():
        counts[(r["run_id"], r["level"])] = counts.get((r["run_id"], r["level"]), 0) + 1
    assert len(counts) == 2 * (levels + 1) and set(counts.values()) == {1}
    assert rows_at_kill < 2 * (levels + 1), "killed too late: nothing was left to retry"
    reports = _reports(sweep_dir)
    moved = [v for v in reports.values() if len({r["node_id"] for r in v}) == 2]
    assert len(moved) == 1, "the lost node's trial was not retried on the other node"
    first_node = moved[0][0]["node_id"]
    retry = [r["level"] for r in moved[0] if r["node_id"] != first_node]
    done_before = max(r["level"] for r in moved[0] if r["node_id"] == first_node)
    # the retry continued from the last finished level: no level before it was trained again
    assert retry == list(range(retry[0], levels + 1)) and retry[0] > done_before
