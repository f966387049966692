"""Sweep magnitude IMP against random and explanation-guided pruning with Ray Tune + Optuna (3 objectives).

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

import pyarrow.fs as pafs

from lthray.config import ConfigError, from_flat, parse_value
from lthray.results import is_uri, remote
from sweeps.presets import PRESETS, Preset, is_guided, sample

EXIT_USAGE = 2


class UsageError(Exception):
    """A flag or config value is invalid: one line, exit code 2, nothing written."""


def _number(name: str, cast: type, ok: Any, allowed: str) -> Any:
    """An argparse type: `cast` the flag's text and check it, naming the flag and what is allowed."""

    def parse(text: str) -> Any:
        try:
            v = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}={text!r} is not {allowed}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{name}={text} is not allowed; expected {allowed}")
        return v

    return parse


def _positive_int(name: str) -> Any:
    return _number(name, int, lambda v: v >= 1, "an integer >= 1")


def _nonneg_float(name: str) -> Any:
    return _number(name, float, lambda v: 0 <= v < float("inf"), "a finite number >= 0")


def _override(s: str) -> tuple[str, Any]:
    key, eq, raw = s.partition("=")
    if not eq or not key:
        raise argparse.ArgumentTypeError(f"--set {s!r} is not KEY=VALUE (e.g. train.epochs=2)")
    return key.strip(), parse_value(raw)  # bare strings too: --set model.name=resnet20


def _choice(s: str) -> tuple[str, list[Any]]:
    key, eq, raw = s.partition("=")
    if not eq or not key or not raw:
        raise argparse.ArgumentTypeError(f"--choice {s!r} is not KEY=V1,V2,... (e.g. train.lr=0.05,0.1)")
    return key.strip(), [parse_value(item) for item in raw.split(",")]


def load_config_file(path: str) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """A JSON or YAML file with optional sections `set` (fixed values) and `choices` (sampled lists)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--config={path} does not exist or is not a file; expected a JSON or YAML file")
    try:
        doc = yaml.safe_load(p.read_text())  # YAML is a superset of JSON; safe_load builds no objects
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise UsageError(f"--config={path} is not valid JSON/YAML ({str(e).splitlines()[0]})") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict) or set(doc) - {"set", "choices"}:
        extra = sorted(set(doc) - {"set", "choices"}) if isinstance(doc, dict) else type(doc).__name__
        raise UsageError(f"--config={path}: top level {extra} is not allowed; expected sections 'set' and/or 'choices'")
    fixed, choices = doc.get("set") or {}, doc.get("choices") or {}
    if not isinstance(fixed, dict) or not isinstance(choices, dict):
        raise UsageError(f"--config={path}: 'set' and 'choices' must be mappings of config keys")
    for k, v in choices.items():
        if not isinstance(v, list) or not v:
            raise UsageError(f"--config={path}: choices.{k}={v!r} is not allowed; expected a non-empty list")
    return fixed, choices


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", choices=sorted(PRESETS), default="digits", help="base config and search space")
    p.add_argument("--num-samples", type=_positive_int("--num-samples"), default=None,
                   help="trials to run (default: the preset's)")
    p.add_argument("--storage", default=os.environ.get("LTHRAY_STORAGE", "./runs"),
                   help="root of sweeps: a folder, NFS path or s3:// URI (default $LTHRAY_STORAGE or ./runs)")
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
    p.add_argument("--choice", dest="choices", type=_choice, action="append", default=[], metavar="KEY=V1,V2",
                   help="sample KEY from these values instead of the preset's, e.g. --choice train.lr=0.05,0.1")
    p.add_argument("--config", default=None, metavar="FILE",
                   help="JSON/YAML file with 'set: {key: value}' and 'choices: {key: [values]}' (flags win)")
    p.add_argument("--resume", action="store_true", help="continue the sweep STORAGE/NAME (error if none)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS or a local Ray)")
    return p


class Store:
    """The sweep's folder STORAGE/NAME: a local/NFS path or an object-store URI (s3://, gs://)."""

    def __init__(self, storage: str, name: str) -> None:
        self.uri = is_uri(storage)
        self.storage = storage.rstrip("/") if self.uri else str(Path(storage).expanduser().resolve())
        self.name = name
        self.dir = f"{self.storage}/{name}"

    def path(self, rel: str) -> str:
        return f"{self.dir}/{rel}"

    def exists(self, rel: str) -> bool:
        if self.uri:
            fs, p = remote(self.path(rel))
            return fs.get_file_info(p).type != pafs.FileType.NotFound
        return Path(self.path(rel)).exists()

    def read_text(self, rel: str) -> str:
        if self.uri:
            fs, p = remote(self.path(rel))
            with fs.open_input_stream(p) as f:
                return f.read().decode()
        return Path(self.path(rel)).read_text()

    def write_text(self, rel: str, text: str) -> None:
        if self.uri:
            fs, p = remote(self.path(rel))
            fs.create_dir(p.rsplit("/", 1)[0], recursive=True)
            with fs.open_output_stream(p) as f:
                f.write(text.encode())
        else:
            Path(self.dir).mkdir(parents=True, exist_ok=True)
            Path(self.path(rel)).write_text(text)


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
    if is_uri(args.storage):
        if not re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/\s]+(/.*)?", args.storage):
            raise UsageError(f"--storage={args.storage!r} is not a storage URI; expected e.g. s3://bucket/lthray")
    else:
        _check_storage(Path(args.storage).expanduser().resolve())
    store = Store(args.storage, name)
    fixed, choices = load_config_file(args.config) if args.config else ({}, {})
    try:
        preset = PRESETS[args.preset].with_choices({**choices, **dict(args.choices)})
        preset = preset.with_overrides({**fixed, **dict(args.overrides)})
        preset.validate()
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if args.resume and not store.exists("tuner.pkl"):
        raise UsageError(f"--resume: no sweep to resume at {store.dir}; run without --resume to start one")
    return preset, store


def _sweep_meta(preset: Preset, num_samples: int) -> dict[str, Any]:
    return {"preset": preset.name, "signature": preset.signature(), "num_samples": num_samples}


def _check_resume_matches(store: Store, meta: dict[str, Any]) -> None:
    old = json.loads(store.read_text("sweep.json"))
    for key in ("preset", "signature", "num_samples"):
        if old.get(key) != meta[key]:
            raise UsageError(
                f"cannot resume {store.dir}: its {key} was {old.get(key)!r}, now {meta[key]!r}; "
                "resume with the original flags or start a new sweep with --name")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        preset, store = validate(args)
        num_samples = args.num_samples or preset.num_samples
        meta = _sweep_meta(preset, num_samples)
        if store.exists("sweep.json"):
            _check_resume_matches(store, meta)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return run(args, preset, store, meta, num_samples)


def run(args: argparse.Namespace, preset: Preset, store: Store, meta: dict[str, Any], num_samples: int) -> int:
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

    store.write_text("sweep.json", json.dumps(meta, indent=1))
    results_dir = store.path("results")

    address = args.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level="WARNING")
    else:  # a private local Ray; dashboard off (nothing listens beyond what Ray needs, all on localhost)
        ray.init(include_dashboard=False, object_store_memory=256 * 1024**2, logging_level="WARNING",
                 _node_ip_address="127.0.0.1")  # a private Ray listens on loopback only
    cpus = float(ray.cluster_resources().get("CPU", 1))
    max_concurrent = args.max_concurrent or max(1, int(cpus // args.cpus_per_trial))

    fn = tune.with_resources(
        # Each config's own checkpoint folder (RUNS/RUN_ID) needs a file system every node shares;
        # on an object store, Tune's per-trial checkpoints carry the state instead.
        tune.with_parameters(trainable, base=preset.base, results_dir=results_dir, sweep=store.name,
                             runs_dir=None if store.uri else store.path("runs")),
        {"cpu": args.cpus_per_trial, "gpu": args.gpus_per_trial},
    )

    def new_tuner(n: int, points: list[dict[str, Any]], seed: int) -> tune.Tuner:
        search = OptunaSearch(
            space=functools.partial(sample, preset),  # plain-picklable: Tune saves the searcher
            # metric/mode go here only: also setting them on TuneConfig silently makes it single-objective
            metric=list(OBJECTIVES), mode=list(OBJECTIVES.values()),
            sampler=optuna.samplers.TPESampler(seed=seed), points_to_evaluate=points or None,
        )
        return tune.Tuner(
            fn,
            tune_config=tune.TuneConfig(
                search_alg=ConcurrencyLimiter(search, max_concurrent=max_concurrent), num_samples=n,
            ),
            run_config=tune.RunConfig(
                name=store.name, storage_path=store.storage,
                failure_config=tune.FailureConfig(max_failures=args.max_failures),
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                callbacks=[LevelPrinter()], verbose=0,
            ),
        )

    if tune.Tuner.can_restore(store.dir):
        print(f"resuming sweep {store.dir}", flush=True)
        tuner = tune.Tuner.restore(store.dir, trainable=fn, resume_unfinished=True, resume_errored=True)
    else:
        tuner = new_tuner(num_samples, [], args.seed)
    errors = 0
    for round_ in range(4):
        grid = tuner.fit()
        errors += sum(1 for r in grid if r.error is not None)
        if interrupted(grid, preset):
            # Ctrl+C: Tune has saved the experiment; every finished level is already a row and a checkpoint.
            print(f"sweep {store.name} interrupted; continue with:\n  "
                  + " ".join([sys.executable, *sys.argv, *([] if "--resume" in sys.argv else ["--resume"])]),
                  flush=True)
            return 130
        # The results folder is the ground truth. Tune can come back short after a hard kill (trials it
        # created after its last snapshot are forgotten on restore) and Optuna may sample one config twice
        # (one run_id, one set of rows): top up until num_samples distinct trials are complete, unfinished
        # ones first (they continue from their checkpoints in STORAGE/NAME/runs/RUN_ID).
        done, partial = tally(results_dir)
        missing = num_samples - len(done)
        if missing <= 0 or round_ == 3:
            break
        points = [preset_params(preset, cfg) for cfg in partial][:missing]
        print(f"sweep {store.name}: {len(done)}/{num_samples} trials complete; running {missing} more "
              f"({len(points)} unfinished ones first)", flush=True)
        tuner = new_tuner(missing, points, args.seed + round_ + 1)
    print(f"sweep {store.name}: {len(done)} trials complete, {errors} errored attempts; results in {results_dir}",
          flush=True)
    return 0 if len(done) >= num_samples else 1


def interrupted(grid: Any, preset: Preset) -> bool:
    """Did Ctrl+C stop the fit? Then some trial ended without error before its last level."""
    for r in grid:
        if r.error is not None:
            continue
        m = r.metrics or {}
        levels = from_flat({**preset.base, **(r.config or {})}).prune.levels
        if m.get("status", "ok") == "ok" and m.get("level", -1) < levels:
            return True
    return False


def tally(results_dir: str) -> tuple[set[str], list[dict[str, Any]]]:
    """(run_ids whose every level - or a diverged level - has a row, flat configs of the unfinished ones)."""
    from lthray import results

    rows = results.read(results_dir).select(["run_id", "level", "status", "config_json"]).to_pylist()
    by_run: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_run.setdefault(r["run_id"], []).append(r)
    done, partial = set(), []
    for rid, rs in by_run.items():
        flat = json.loads(rs[0]["config_json"])
        levels = from_flat(flat).prune.levels
        if any(r["status"] != "ok" for r in rs) or {r["level"] for r in rs} >= set(range(levels + 1)):
            done.add(rid)
        else:
            partial.append(flat)
    return done, partial


def preset_params(preset: Preset, flat: dict[str, Any]) -> dict[str, Any]:
    """The searcher's parameters that reproduce a config (for points_to_evaluate)."""
    keys = list(preset.space) + (list(preset.guided_space) if is_guided(flat["prune.method"]) else [])
    return {k: flat[k] for k in keys}


if __name__ == "__main__":
    sys.exit(main())
