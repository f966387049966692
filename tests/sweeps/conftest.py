"""Helpers for tests that run the sweep as a real process and kill it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from lthray import results

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "sweeps" / "imp_vs_guided.py"


class Sweep:
    def __init__(self, storage: Path, name: str = "t") -> None:
        self.storage, self.name = storage, name
        self.results = storage / name / "results"
        self.root = ROOT

    def cmd(self, *extra: str) -> list[str]:
        return [sys.executable, str(SCRIPT), "--preset", "smoke", "--storage", str(self.storage), "--name", self.name,
                *extra]

    @staticmethod
    def env(**extra: str) -> dict[str, str]:
        return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
                "RAY_ADDRESS": "", **extra}

    def run(self, *extra: str, timeout: int = 400) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(*extra), env=self.env(), capture_output=True, text=True, timeout=timeout)

    def start(self, *extra: str, **env: str) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(*extra), env=self.env(**env), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)

    wait_for = staticmethod(lambda *a, **k: wait_for(*a, **k))
    family = staticmethod(lambda proc: family(proc))
    kill_tree = staticmethod(lambda proc: kill_tree(proc))

    def rows(self) -> int:
        return len(results.result_files(self.results))

    def counts(self) -> dict[tuple[str, int], int]:
        counts: dict[tuple[str, int], int] = {}
        for r in results.read(self.results).to_pylist():
            counts[(r["run_id"], r["level"])] = counts.get((r["run_id"], r["level"]), 0) + 1
        return counts


def wait_for(proc: subprocess.Popen, cond: Callable[[], bool], what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"sweep exited ({proc.returncode}) before {what}:\n"
                                 + proc.stdout.read().decode()[-3000:])
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def family(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process it started (Ray's GCS, raylet, workers), by PID."""
    kids = family(proc)
    for p in ([psutil.Process(proc.pid)] if proc.poll() is None else []) + kids:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=30)
    psutil.wait_procs(kids, timeout=30)


@pytest.fixture
def sweep(tmp_path):
    started: list[subprocess.Popen] = []
    s = Sweep(tmp_path)
    orig = s.start

    def start(*a, **k):
        p = orig(*a, **k)
        started.append(p)
        return p

    s.start = start
    yield s
    for p in started:  # never leave Ray processes behind, whatever the test did
        if p.poll() is None or family(p):
            kill_tree(p)
