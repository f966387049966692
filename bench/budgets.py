"""The study's time budgets, measured (never asserted in tests).

    python -m bench.budgets --demo                      # make demo's sweep + report, and Ray's overhead
    python -m bench.budgets --search 16                 # a 16-trial search (fashion-search-demo) the same way
    python -m bench.budgets --study runs/fashion/results  # explain share and level times of a finished study
    python -m bench.budgets --results runs/demo/results --wall 570  # efficiency of a sweep timed elsewhere

Efficiency = (unique train + explain seconds) / (cores x wall): the share of the machine a sweep spends
training and explaining, each level counted once (a level another trial reused costs nothing again).
Beside it, the same with the test-set pass counted as work too (eval_seconds: test accuracy, the study's
first metric, and the test features the concept bottleneck reads); rows before schema 8 lack it.
Level trainings: those the sweep did (rows whose own train_seconds > 0) against the unique ones (distinct
lineage keys, lthray.trial.cache), the work a sweep that never computes anything twice does.

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
         "computed the concept bank; the plain processes share no levels)", ratio, "<= 1.10", ratio <= 1.10),
        *efficiency_rows("demo", rows, sweep, os.cpu_count() or 1, plain),
    ]


def efficiency(rows: pd.DataFrame, wall: float, cores: int) -> tuple[float, float, int, int, pd.Series]:
    """(efficiency, efficiency counting the test pass too, level trainings done, unique level trainings,
    the seconds of each part summed) of a sweep."""
    import json

    from lthray.config import from_flat
    from lthray.trial import cache as share

    ok = rows[rows["status"] == "ok"]
    work = float((ok["train_seconds"] + ok["explain_seconds"]).sum())
    evals = float(ok["eval_seconds"].fillna(0).sum()) if "eval_seconds" in ok.columns else 0.0
    done = int((rows["train_seconds"] > 0).sum())
    keys = {share.lineage_key(from_flat(json.loads(c)), int(lv)) for c, lv in zip(rows["config_json"], rows["level"],
                                                                                   strict=True)}
    parts = [c for c in ("cam_seconds", "faithfulness_seconds", "lrp_seconds", "sanity_seconds", "pcbm_seconds",
                         "explain_seconds", "eval_seconds", "train_seconds") if c in ok.columns]
    return work / (cores * wall), (work + evals) / (cores * wall), done, len(keys), ok[parts].sum()


def efficiency_rows(name: str, rows: pd.DataFrame, wall: float, cores: int, plain: float | None = None
                    ) -> list[tuple]:
    eff, eff_eval, done, unique, parts = efficiency(rows, wall, cores)
    trials = rows["run_id"].nunique()
    out = [
        (f"{name}: efficiency (train + explain) / (cores x wall)",
         f"{parts['train_seconds'] + parts['explain_seconds']:.0f} s of work on {cores} cores in {wall:.0f} s", eff,
         ">= 0.80", eff >= 0.8),
        (f"{name}: efficiency (train + test pass + explain) / (cores x wall)",
         f"{parts['train_seconds'] + parts['explain_seconds'] + parts.get('eval_seconds', 0):.0f} s of work on "
         f"{cores} cores in {wall:.0f} s", eff_eval, "(report)", True),
        (f"{name}: level trainings done / unique", f"{done} trained, {unique} unique lineage keys, {len(rows)} rows",
         done / max(unique, 1), "<= 1.00", done <= unique),
        (f"{name}: explain / train seconds", ", ".join(f"{k.removesuffix('_seconds')} {v:.0f}s" for k, v in
                                                      parts.items()),
         parts["explain_seconds"] / max(parts["train_seconds"], 1e-9), "< 1.00",
         parts["explain_seconds"] < parts["train_seconds"]),
    ]
    if plain is not None:
        per = (wall - plain) * cores / trials
        out.append((f"{name}: Ray's overhead per trial", f"(Ray {wall:.0f}s - plain {plain:.0f}s) x {cores} cores / "
                    f"{trials} trials", per, "<= 5 s", per <= 5))
    return out


def bench_search(n: int) -> list[tuple]:
    """A search of n Optuna trials (fashion-search-demo) through Ray, timed, and its efficiency."""
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
        wall = _run([py, "sweeps/imp_vs_guided.py", "--preset", "fashion-search-demo", "--num-samples", str(n),
                     "--storage", f"{tmp}/runs", "--name", "s"], env)
        rows = pd.read_parquet(f"{tmp}/runs/s/results")
    return efficiency_rows(f"{n}-trial search", rows, wall, os.cpu_count() or 1)


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
    p.add_argument("--search", type=int, default=None, metavar="N", help="time an N-trial search (fashion-search-demo)")
    p.add_argument("--study", default=None, metavar="RESULTS", help="a finished study's results folder")
    p.add_argument("--results", default=None, metavar="RESULTS", help="a sweep's results folder, with --wall")
    p.add_argument("--wall", type=float, default=None, help="that sweep's wall time in seconds")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="cores it ran on (default: this machine's)")
    args = p.parse_args(argv)
    if (args.results is None) != (args.wall is None):
        p.error("--results and --wall go together")
    rows = (bench_demo() if args.demo else []) + (bench_search(args.search) if args.search else []) \
        + (bench_study(args.study) if args.study else []) \
        + (efficiency_rows(args.results, pd.read_parquet(args.results), args.wall, args.cores) if args.results else [])
    if not rows:
        p.error("nothing to measure: pass --demo, --search N, --study RESULTS or --results RESULTS --wall S")
    w = max(len(r[0]) for r in rows)
    print(f"{'measure'.ljust(w)}  {'ratio':>7}  {'goal':>16}  ok  detail")
    for name, detail, ratio, goal, ok in rows:
        print(f"{name.ljust(w)}  {ratio:7.2f}  {goal:>16}  {'yes' if ok else 'NO ':3} {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
