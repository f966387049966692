"""The study's time budgets, measured (never asserted in tests).

    python -m bench.budgets --demo                      # make demo's sweep + report, and Ray's overhead
    python -m bench.budgets --study runs/fashion/results  # explain share and level times of a finished study

--demo times the demo sweep (the fashion-demo preset through Ray, concept bank computed cold in a fresh
cache) and its analysis, then runs the very same trials without Ray: two plain `python -m lthray`
processes, one CPU each, splitting the grid, which is what Ray does with 2 CPUs minus Ray itself.
The ratio of the two is Ray's overhead. Goals: demo <= 600 s, Ray <= 1.10x, explain share <= 0.15.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - t0


def bench_demo() -> list[tuple]:
    from lthray.presets import PRESETS

    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": "", "LTHRAY_DATA": f"{tmp}/cache"}
        sweep = _run([py, "sweeps/imp_vs_guided.py", "--preset", "fashion-demo", "--storage", f"{tmp}/runs",
                      "--name", "demo"], env)
        analysis = _run([py, "-m", "analysis.pareto", "--results", f"{tmp}/runs/demo/results", "--out",
                         f"{tmp}/an"], env)
        # the same trials without Ray: 2 plain processes with 1 thread each, the bank already cached
        # (Ray's run paid for it cold, so the comparison below leaves that out of both sides: see `bank`)
        grid = PRESETS["fashion-demo"].grid()
        halves = [grid[0::2], grid[1::2]]
        scripts = []
        for i, half in enumerate(halves):
            lines = [" ".join([py, "-m", "lthray", "--preset", "fashion-demo", "--threads", "1", "--workdir",
                               f"{tmp}/plain{i}", "--results", f"{tmp}/plain/results",
                               *[f"--set {k}={v}" for k, v in p.items()]]) for p in half]
            scripts.append("set -e\n" + "\n".join(lines))
        t0 = time.perf_counter()
        procs = [subprocess.Popen(["bash", "-c", s], env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for s in scripts]
        assert all(p.wait() == 0 for p in procs), "a plain trial failed"
        plain = time.perf_counter() - t0
        rows = pd.read_parquet(f"{tmp}/runs/demo/results")
        first = rows["created_at"].min()
    total = sweep + analysis
    ratio = sweep / plain
    return [
        ("make demo: sweep + analysis (cold concept bank)", f"sweep {sweep:.0f}s + analysis {analysis:.0f}s; "
         f"first level row after {first}", total / 600, "<= 1.00 (600 s)", total <= 600),
        ("Ray sweep vs the same trials in 2 plain processes", f"{sweep:.0f}s vs {plain:.0f}s (Ray's run also "
         "computed the concept bank)", ratio, "<= 1.10", ratio <= 1.10),
    ]


def bench_study(results: str) -> list[tuple]:
    rows = pd.read_parquet(results)
    ok = rows[rows["status"] == "ok"]
    share = ok["explain_seconds"].sum() / (ok["train_seconds"] + ok["explain_seconds"]).sum()
    span = (rows["created_at"].max() - rows["created_at"].min()).total_seconds()
    level = (ok["train_seconds"] + ok["explain_seconds"]).mean()
    return [
        ("explain share of a level (study preset)", f"explain {ok['explain_seconds'].mean():.1f}s / level, train "
         f"{ok['train_seconds'].mean():.1f}s; {len(ok)} levels", share, "<= 0.15", share <= 0.15),
        ("study: first to last row", f"{span / 60:.1f} min for {rows['run_id'].nunique()} trials, "
         f"{len(rows)} levels, {level:.0f}s a level", (span + level) / 3600, "<= 1.00 (60 min)",
         span + level <= 3600),
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--demo", action="store_true", help="time make demo's sweep and Ray's overhead (~15 min)")
    p.add_argument("--study", default=None, metavar="RESULTS", help="a finished study's results folder")
    args = p.parse_args(argv)
    rows = (bench_demo() if args.demo else []) + (bench_study(args.study) if args.study else [])
    if not rows:
        p.error("nothing to measure: pass --demo and/or --study RESULTS")
    w = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(w)}  {'ratio':>7}  {'goal':>16}  ok  detail")
    for name, detail, ratio, goal, ok in rows:
        print(f"{name.ljust(w)}  {ratio:7.2f}  {goal:>16}  {'yes' if ok else 'NO ':3} {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
