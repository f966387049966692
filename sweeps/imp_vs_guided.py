"""Sweep magnitude IMP against other pruning methods with Ray Tune + Optuna (multi-objective).

    python sweeps/imp_vs_guided.py --preset digits --num-samples 8
    python sweeps/imp_vs_guided.py --preset digits --num-samples 8 --resume     # after a crash / Ctrl+C

Results: Parquet rows in STORAGE/NAME/results/ (one file per trial and level), Tune's state in STORAGE/NAME/.
Re-running the same command also resumes; --resume additionally insists there is something to resume.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from lthray.config import ConfigError
from sweeps.presets import PRESETS, Preset, sample

EXIT_USAGE = 2


class UsageError(Exception):
    """A flag or config value is invalid: one line, exit code 2, nothing written."""


def _positive_int(name: str):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={s!r} is not an integer; expected an integer >= 1") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{name}={v} is not allowed; expected an integer >= 1")
        return v

    return parse


def _nonneg_float(name: str):
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={s!r} is not a number; expected a number >= 0") from None
        if not v >= 0 or v == float("inf"):
            raise argparse.ArgumentTypeError(f"{name}={s} is not allowed; expected a finite number >= 0")
        return v

    return parse


def _override(s: str) -> tuple[str, Any]:
    key, eq, raw = s.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"--set {s!r} is not KEY=VALUE (e.g. train.epochs=2)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # bare strings: --set model.name=resnet20
    return key.strip(), value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="digits", help="base config and search space")
    p.add_argument("--num-samples", type=_positive_int("--num-samples"), default=None,
                   help="trials to run (default: the preset's)")
    p.add_argument("--storage", default="./runs", help="root folder of sweeps (default ./runs)")
    p.add_argument("--name", default=None, help="sweep name: results in STORAGE/NAME (default: the preset name)")
    p.add_argument("--max-concurrent", type=_positive_int("--max-concurrent"), default=None,
                   help="trials at once (default: CPUs / cpus-per-trial)")
    p.add_argument("--cpus-per-trial", type=_nonneg_float("--cpus-per-trial"), default=1.0)
    p.add_argument("--gpus-per-trial", type=_nonneg_float("--gpus-per-trial"), default=0.0,
                   help="fractions pack trials: 0.25 runs 4 trials per GPU")
    p.add_argument("--max-failures", type=int, default=2, help="retries of a crashed trial (from its checkpoint)")
    p.add_argument("--seed", type=int, default=0, help="seed of the Optuna sampler")
    p.add_argument("--set", dest="overrides", type=_override, action="append", default=[], metavar="KEY=VALUE",
                   help="fix a config value for every trial, e.g. --set train.epochs=2 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue the sweep STORAGE/NAME (error if none)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    return p


def _check_storage(storage: Path) -> None:
    if storage.exists() and not storage.is_dir():
        raise UsageError(f"--storage={storage} is a file; expected a folder (existing or creatable)")
    probe = storage
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--storage={storage} is under {probe}, which is a file; expected a folder")
    try:  # really try: permission bits lie for root and on read-only mounts
        tempfile.TemporaryFile(dir=probe).close()
    except OSError as e:
        raise UsageError(f"--storage={storage} is not writable ({probe}: {e.strerror}); "
                         "expected a writable folder") from None


def validate(args: argparse.Namespace) -> tuple[Preset, Path, str]:
    """Everything that can be checked before Ray starts; raises UsageError with one line."""
    name = args.name or args.preset
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise UsageError(f"--name={name!r} is not allowed; expected letters, digits, '_', '-', '.'")
    if args.cpus_per_trial <= 0:
        raise UsageError(f"--cpus-per-trial={args.cpus_per_trial} is not allowed; expected a number > 0")
    if args.gpus_per_trial > 1 and args.gpus_per_trial != int(args.gpus_per_trial):
        raise UsageError(f"--gpus-per-trial={args.gpus_per_trial} is not allowed; expected a fraction <= 1 "
                         "or a whole number of GPUs")
    if args.max_failures < 0:
        raise UsageError(f"--max-failures={args.max_failures} is not allowed; expected an integer >= 0")
    storage = Path(args.storage).expanduser().resolve()
    _check_storage(storage)
    try:
        preset = PRESETS[args.preset].with_overrides(dict(args.overrides))
        preset.validate()
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.resume and not (storage / name / "tuner.pkl").exists():
        raise UsageError(f"--resume: no sweep to resume at {storage / name}; run without --resume to start one")
    return preset, storage, name


def _sweep_meta(preset: Preset, num_samples: int) -> dict[str, Any]:
    return {"preset": preset.name, "signature": preset.signature(), "num_samples": num_samples}


def _check_resume_matches(meta_path: Path, meta: dict[str, Any]) -> None:
    old = json.loads(meta_path.read_text())
    for key in ("preset", "signature", "num_samples"):
        if old.get(key) != meta[key]:
            raise UsageError(
                f"cannot resume {meta_path.parent}: its {key} was {old.get(key)!r}, now {meta[key]!r}; "
                "resume with the original flags or start a new sweep with --name")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        preset, storage, name = validate(args)
        num_samples = args.num_samples or preset.num_samples
        meta = _sweep_meta(preset, num_samples)
        exp_dir, meta_path = storage / name, storage / name / "sweep.json"
        if meta_path.exists():
            _check_resume_matches(meta_path, meta)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return run(args, preset, exp_dir, meta, num_samples)


def run(args: argparse.Namespace, preset: Preset, exp_dir: Path, meta: dict[str, Any], num_samples: int) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # One checkpoint kept per trial forces an experiment snapshot per level: wanted (a resume then
    # knows every finished level), so Tune's warning about it is noise.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import optuna
    import ray
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from sweeps.progress import LevelPrinter
    from sweeps.trainable import OBJECTIVES, trainable

    exp_dir.mkdir(parents=True, exist_ok=True)
    (exp_dir / "sweep.json").write_text(json.dumps(meta, indent=1))
    results_dir = exp_dir / "results"
    results_dir.mkdir(exist_ok=True)

    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level="WARNING")
    else:  # a private local Ray; dashboard off (nothing listens beyond what Ray needs, all on localhost)
        ray.init(include_dashboard=False, object_store_memory=256 * 1024**2, logging_level="WARNING")
    cpus = float(ray.cluster_resources().get("CPU", 1))
    max_concurrent = args.max_concurrent or max(1, int(cpus // args.cpus_per_trial))

    fn = tune.with_resources(
        tune.with_parameters(trainable, base=preset.base, results_dir=str(results_dir), sweep=exp_dir.name),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )
    if tune.Tuner.can_restore(str(exp_dir)):
        print(f"resuming sweep {exp_dir}", flush=True)
        tuner = tune.Tuner.restore(str(exp_dir), trainable=fn, resume_unfinished=True, resume_errored=True)
    else:
        search = OptunaSearch(
            space=functools.partial(sample, preset),  # plain-picklable: Tune saves the searcher
            # metric/mode go here only: also setting them on TuneConfig silently makes it single-objective
            metric=list(OBJECTIVES), mode=list(OBJECTIVES.values()),
            sampler=optuna.samplers.TPESampler(seed=args.seed),
        )
        tuner = tune.Tuner(
            fn,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(search, max_concurrent=max_concurrent), num_samples=num_samples,
            ),
            run_config=tune.RunConfig(
                name=exp_dir.name, storage_path=str(exp_dir.parent),
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[LevelPrinter()], verbose=0,
            ),
        )
    grid = tuner.fit()
    errors = sum(1 for r in grid if r.error is not None)
    print(f"sweep {exp_dir.name}: {len(grid)} trials, {errors} errored; results in {results_dir}", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
