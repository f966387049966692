"""Sweep magnitude IMP against random and explanation-guided pruning with Ray Tune + Optuna (3 objectives).

    python sweeps/imp_vs_guided.py --num-samples 64              # the mission's search (fashion-search)
    python sweeps/imp_vs_guided.py --num-samples 64 --resume     # after a crash / Ctrl+C: the same study
    python sweeps/imp_vs_guided.py --confirm fashion-search --seeds 5   # its Pareto set, fresh seeds, vs IMP
    python sweeps/imp_vs_guided.py --preset fashion              # the reference study's paired grid

Results: Parquet rows in STORAGE/NAME/results/ (one file per trial and level), Tune's state in STORAGE/NAME/.
Re-running the same command also resumes; --resume additionally insists there is something to resume.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
from typing import Any

from sweeps import lock as driver_lock
from sweeps import resume
from sweeps.cli import UsageError, parser, validate
from sweeps.presets import PRESETS, Preset, sample
from sweeps.store import SweepFolder

EXIT_USAGE = 2
# Fits run after the first until the results hold every trial: Tune can come back short after a hard
# kill, and a searcher can sample one config twice. Each top-up round runs only the missing trials,
# so 3 more rounds cover a kill during a kill's resume; a sweep still short after them exits 1.
TOP_UP_ROUNDS = 4
__all__ = ["PRESETS", "main", "parser", "validate"]


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        preset, store = validate(args)
        num_samples = len(preset.grid()) if preset.search == "grid" else args.num_samples or preset.num_samples
        meta = resume.sweep_meta(preset, num_samples, confirm_of=args.confirm)
        if store.exists("sweep.json"):
            resume.check_resume_matches(store, meta)
    except (UsageError, resume.ResumeMismatch) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    fresh = not store.uri and not os.path.isdir(store.dir)
    try:  # one driver per sweep (sweeps/lock.py)
        lock = driver_lock.acquire(store)
    except driver_lock.SweepLocked as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    rc = EXIT_USAGE
    try:
        rc = run(args, preset, store, meta, num_samples)
        return rc
    finally:
        untouched = rc == EXIT_USAGE and not store.exists("sweep.json")  # refused: leave no trace
        lock.release(discard=untouched)
        if untouched and fresh:
            with contextlib.suppress(OSError):
                os.rmdir(store.dir)


class ClusterRefused(RuntimeError):
    """The Ray cluster at --address refused this driver's token (or its lack of one)."""


def _refused_for_auth(e: BaseException | None) -> bool:
    # Ray wraps the GCS's AuthenticationError in a RuntimeError's text, then in a ConnectionError.
    while e is not None:
        if type(e).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def init_ray(args: argparse.Namespace) -> int:
    """Join a cluster (--address / $RAY_ADDRESS) or start a private local Ray; returns trials at once.
    Raises ClusterRefused when the cluster rejects this driver's authentication token."""
    import ray

    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, logging_level="WARNING")
        except ConnectionError as e:
            if not _refused_for_auth(e):
                raise
            mode = os.environ.get("RAY_AUTH_MODE", "unset")
            raise ClusterRefused(
                f"the Ray cluster at {address} refused this driver's authentication token (RAY_AUTH_MODE is "
                f"{mode}): run it with RAY_AUTH_MODE=token and the cluster's token in ~/.ray/auth_token, "
                "$RAY_AUTH_TOKEN_PATH or $RAY_AUTH_TOKEN (README: Running on a cluster)") from None
    else:  # a private local Ray; dashboard off (nothing listens beyond what Ray needs, all on localhost)
        ray.init(include_dashboard=False, object_store_memory=256 * 1024**2, logging_level="WARNING",
                 _node_ip_address="127.0.0.1")  # a private Ray listens on loopback only
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return args.max_concurrent or max(1, int(cpus // args.cpus_per_trial))


def make_tuner(fn: Any, args: argparse.Namespace, preset: Preset, store: SweepFolder, max_concurrent: int, n: int,
               points: list[dict[str, Any]], seed: int) -> Any:
    """A Tuner over `n` configs: the grid's (or `points`, the ones left), or Optuna's samples."""
    import optuna
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from sweeps.progress import LevelPrinter, NamedOptunaSearch
    from sweeps.trainable import OBJECTIVES

    # reuse_actors: a finished trial's worker process runs the next trial, so the ~10 s of starting a worker
    # and importing torch, pytorch-grad-cam and zennit (and loading the dataset, lru-cached in lthray.data)
    # are paid once per worker rather than once per trial - 13 s of a demo trial's 80 (measured from the
    # trials' result.json timestamps). Trials share nothing else: every seed is explicit (lthray.data.step_seed).
    if preset.search == "grid":  # each combination once: Tune's grid search over whole param dicts
        space = {"params": tune.grid_search(points or preset.grid())}
        tc = tune.TuneConfig(max_concurrent_trials=max_concurrent, num_samples=1, reuse_actors=True)
    else:
        search = NamedOptunaSearch(
            space=functools.partial(sample, preset),  # plain-picklable: Tune saves the searcher
            # metric/mode go here only: also setting them on TuneConfig silently makes it single-objective
            metric=list(OBJECTIVES), mode=list(OBJECTIVES.values()),
            # Multi-objective TPE rather than NSGA-II: NSGA-II's first generation alone is 50 random
            # trials, most of a 64-trial budget; TPE models the front from its first 10 (n_startup_trials).
            # Its constant liar (on by default) keeps concurrent trials from being suggested the same config.
            sampler=optuna.samplers.TPESampler(seed=seed), points_to_evaluate=points or None,
            study_name=store.name, storage=study_storage(store),
        )
        space, tc = None, tune.TuneConfig(search_alg=ConcurrencyLimiter(search, max_concurrent=max_concurrent),
                                          num_samples=n, reuse_actors=True)
    return tune.Tuner(fn, param_space=space, tune_config=tc, run_config=tune.RunConfig(
        name=store.name, storage_path=store.storage, failure_config=tune.FailureConfig(max_failures=args.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[LevelPrinter(n, levels_of(preset)), *trackers(args, store)], verbose=0))


def levels_of(preset: Preset) -> int:
    """Levels per trial (level 0 included) for the progress estimate: the preset's, or its largest choice."""
    choices = {**preset.space, **preset.guided_space}.get("prune.levels")
    return 1 + (max(choices) if choices else int(preset.base.get("prune.levels", 5)))


def study_storage(store: SweepFolder) -> Any:
    """The Optuna study's storage: SQLite at STORAGE/NAME/optuna.db, which a resume (Tune restores the
    searcher, and each top-up round loads the study by name) continues and optuna-dashboard opens. On an
    object store (s3://) SQLite cannot live in the bucket: the study is then in memory, pickled with Tune's
    searcher state into the bucket (a resume still continues it), and the analysis reads the rows."""
    if store.uri:
        return None
    import optuna

    return optuna.storages.RDBStorage(f"sqlite:///{store.path('optuna.db')}")


def trackers(args: argparse.Namespace, store: SweepFolder) -> list[Any]:
    """Ray Tune's own logger callbacks for --log (each checked to be installed before Ray started)."""
    out: list[Any] = []
    for name in args.log:
        if name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            # A local SQLite store (MLflow 3 keeps its ./mlruns file store in maintenance mode and refuses it)
            uri = os.environ.get("MLFLOW_TRACKING_URI") or (
                f"sqlite:///{store.path('mlflow.db')}" if not store.uri else f"sqlite:///{os.path.abspath('mlflow.db')}")
            out.append(MLflowLoggerCallback(tracking_uri=uri, experiment_name=store.name, save_artifact=False))
        elif name == "tensorboard":
            from ray.tune.logger import TBXLoggerCallback

            out.append(TBXLoggerCallback())  # event files in each trial's folder: tensorboard --logdir STORAGE/NAME
        elif name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            os.environ.setdefault("WANDB_MODE", "offline")  # nothing leaves the machine unless asked
            out.append(WandbLoggerCallback(project=store.name, mode=os.environ["WANDB_MODE"]))
    return out


def rewind_points(preset: Preset) -> tuple[int, ...]:
    """Every rewind step (in iterations) the sweep's trials can ask for: level 0, shared by all of them
    (lthray.trial.cache), saves each. From the preset's rewind_step choices, with the other keys at their first."""
    from lthray import schedule
    from lthray.config import ConfigError
    from lthray.validate import checked_config

    first = {k: v[0] for k, v in {**preset.space, **preset.guided_space}.items()}
    specs = {**preset.space, **preset.guided_space}.get("prune.rewind_step", [preset.base.get("prune.rewind_step")])
    points = set()
    for p in (preset.points or [{}]):
        for spec in specs:
            flat = {**preset.base, **first, **p}
            if spec is not None:
                flat["prune.rewind_step"] = spec
            try:
                points.add(schedule.rewind_steps(checked_config(flat)))
            except ConfigError:  # a combination the first choices make invalid: its trials never run
                continue
    return tuple(sorted(points))


def run(args: argparse.Namespace, preset: Preset, store: SweepFolder, meta: dict[str, Any], num_samples: int) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # One checkpoint kept per trial forces an experiment snapshot per level: wanted (a resume then
    # knows every finished level), so Tune's warning about it is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    from ray import tune

    from sweeps.trainable import trainable

    try:  # before anything is written: a refused driver leaves no trace in the sweep folder
        max_concurrent = init_ray(args)
    except ClusterRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    store.write_text("sweep.json", json.dumps(meta, indent=1))
    results_dir = store.path("results")
    fn = tune.with_resources(
        # Each config's own checkpoint folder (RUNS/RUN_ID) needs a file system every node shares;
        # on an object store, Tune's per-trial checkpoints carry the state instead.
        tune.with_parameters(trainable, base=preset.base, results_dir=results_dir, sweep=store.name,
                             runs_dir=None if store.uri else store.path("runs"),
                             shared=store.path("shared") if args.share else None,
                             rewind_points=rewind_points(preset), plugins=tuple(args.plugin), cwd=os.getcwd()),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )
    if resume.has_state(store):
        print(f"resuming sweep {store.dir}", flush=True)
        tuner = tune.Tuner.restore(store.dir, trainable=fn, resume_unfinished=True, resume_errored=True)
    else:
        tuner = make_tuner(fn, args, preset, store, max_concurrent, num_samples, [], args.seed)
    errors = 0
    for round_ in range(TOP_UP_ROUNDS):
        grid = tuner.fit()
        errors += sum(1 for r in grid if r.error is not None)
        if resume.interrupted(grid, preset):
            # Ctrl+C: Tune has saved the experiment; every finished level is already a row and a checkpoint.
            print(f"sweep {store.name} interrupted; continue with:\n  "
                  + " ".join([sys.executable, *sys.argv, *([] if "--resume" in sys.argv else ["--resume"])]),
                  flush=True)
            return 130
        done, partial = resume.tally(results_dir)  # the results folder is the ground truth
        missing = num_samples - len(done)
        if missing <= 0 or round_ == TOP_UP_ROUNDS - 1:
            break
        points = resume.grid_left(preset, done) if preset.search == "grid" else \
            [resume.preset_params(preset, cfg) for cfg in partial][:missing]
        print(f"sweep {store.name}: {len(done)}/{num_samples} trials complete; running {missing} more "
              f"({len(points)} unfinished ones first)", flush=True)
        tuner = make_tuner(fn, args, preset, store, max_concurrent, missing, points, args.seed + round_ + 1)
    print(f"sweep {store.name}: {len(done)} trials complete, {errors} errored attempts; results in {results_dir}",
          flush=True)
    return 0 if len(done) >= num_samples else 1


if __name__ == "__main__":
    sys.exit(main())
