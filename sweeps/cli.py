"""The sweep's command line: flags, config files and every check that can run before Ray starts."""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from lthray.config import ConfigError, parse_override, parse_value, split_key_value
from lthray.storage import is_uri
from lthray.tracking import TRACKERS
from sweeps import resume
from sweeps.presets import PRESETS, Preset
from sweeps.store import SweepFolder


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
    try:
        return parse_override(s, "train.epochs=2")  # bare strings too: --set model.name=resnet20
    except ConfigError as e:
        raise argparse.ArgumentTypeError(f"--set {e}") from None


def _choice(s: str) -> tuple[str, list[Any]]:
    try:
        key, raw = split_key_value(s)
    except ConfigError:
        key, raw = "", ""
    if not raw:
        raise argparse.ArgumentTypeError(f"--choice {s!r} is not KEY=V1,V2,... (e.g. train.lr=0.05,0.1)")
    return key, [parse_value(item) for item in raw.split(",")]


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
    p.add_argument("--preset", choices=sorted(PRESETS), default="fashion-search",
                   help="base config and search space (default: fashion-search, the mission's Optuna search; "
                        "fashion is the reference study's paired grid)")
    p.add_argument("--search", choices=["optuna", "grid"], default=None,
                   help="optuna: sample --num-samples configs (multi-objective TPE) | grid: every combination of "
                        "the choices exactly once, paired by seed (default: the preset's)")
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
    p.add_argument("--no-share", dest="share", action="store_false",
                   help="compute every trial's levels itself (default: a level another trial of the sweep "
                        "computed, e.g. every method's dense level 0 at one seed, is reused; lthray.trial.cache)")
    p.add_argument("--confirm", default=None, metavar="SEARCH",
                   help="re-run the Pareto set of the finished search SEARCH (same --storage), each front config "
                        "and IMP at its schedule and rewind, with --seeds fresh seeds: a paired grid in the sweep "
                        "SEARCH-confirm (--set applies too)")
    p.add_argument("--seeds", type=_positive_int("--seeds"), default=5, help="seeds per config of --confirm")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="a module (dotted name, or the path of a .py file) that registers models, datasets or metrics "
                        "(lthray.plugins); imported here and in every Ray worker; repeatable")
    p.add_argument("--log", choices=sorted(TRACKERS), action="append", default=[],
                   help="also hand the per-level metrics to an experiment tracker through Ray Tune's own logger "
                        "callback: mlflow (a local SQLite store, STORAGE/NAME/mlflow.db, unless MLFLOW_TRACKING_URI "
                        "is set), tensorboard, wandb (offline unless WANDB_MODE says otherwise); repeatable")
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


def check_data_available(preset: Preset) -> None:
    """Every dataset (and concept source) the sweep will use is loadable: fail here, before Ray starts."""
    from lthray.data import DataUnavailableError, load
    from lthray.explain.concepts import ConceptBankUnavailable
    from lthray.schedule import check_loaded
    from lthray.validate import checked_config

    cfgs = [checked_config({**preset.base, **p}) for p in preset.grid()]
    try:  # the files decide: one read per dataset, whatever subsets and probe sizes the trials use
        for ds in sorted({c.data.dataset for c in cfgs}):
            n = len(load(ds, 2, "cpu").train_x)
            for c in (c for c in cfgs if c.data.dataset == ds):  # data.subset keeps min(train_size, n)
                check_loaded(c, min(c.data.train_size, n) if c.data.train_size else n)
    except (DataUnavailableError, ConfigError) as e:
        raise UsageError(str(e)) from None
    finally:
        load.cache_clear()  # the driver only checks: it must not hold a copy of the data for the whole sweep
    from lthray.explain.concept_sources import check_available

    try:
        for cc in {c.concepts for c in cfgs}:
            check_available(cc)
    except ConceptBankUnavailable as e:
        raise UsageError(str(e)) from None


def check_trackers(names: list[str]) -> None:
    """Each --log tracker's module is installed (lthray.tracking names them), before Ray starts."""
    from lthray.tracking import TrackerUnavailable, check

    try:
        check(names)
    except TrackerUnavailable as e:
        raise UsageError(str(e)) from None


Layer = tuple[dict[str, Any], dict[str, list[Any]]]  # (fixed values, sampled choices) of one source


def compose(file: Layer, flags: Layer, path: str | None = None) -> Layer:
    """The fixed values and choices every trial gets: a flag replaces the config file's setting of the
    same key, whether that was a value or a choice; one key both fixed and sampled by the same source
    is ambiguous and refused (UsageError), rather than one of them silently losing."""
    for (fixed, choices), where in ((file, f"--config={path}"), (flags, "the flags")):
        both = sorted(set(fixed) & set(choices))
        if both:
            raise UsageError(f"{where} both fix and sample {', '.join(both)}; give each key as a value (--set / "
                             "'set') or as choices (--choice / 'choices'), not both")
    flag_keys = set(flags[0]) | set(flags[1])
    fixed = {**{k: v for k, v in file[0].items() if k not in flag_keys}, **flags[0]}
    choices = {**{k: v for k, v in file[1].items() if k not in flag_keys}, **flags[1]}
    return fixed, choices


def _confirm_preset(args: argparse.Namespace, choices: dict[str, list[Any]]) -> Preset:
    from sweeps.confirm import ConfirmError, confirm_preset

    if choices or args.search not in (None, "grid"):
        raise UsageError("--confirm re-runs the search's front configs as a paired grid: --choice, 'choices' "
                         "and --search optuna do not apply (--set does)")
    if args.confirm == (args.name or f"{args.confirm}-confirm"):
        raise UsageError(f"--name={args.name} is the search itself; the confirm needs a sweep of its own")
    try:
        return confirm_preset(SweepFolder(args.storage, args.confirm), args.seeds)
    except ConfirmError as e:
        raise UsageError(str(e)) from None


def validate(args: argparse.Namespace) -> tuple[Preset, SweepFolder]:
    """Everything that can be checked before Ray starts; raises UsageError with one line."""
    from lthray.plugins import PluginError, load_all

    # a .py plugin by its absolute path: the workers start elsewhere
    args.plugin = [str(Path(s).expanduser().resolve()) if s.endswith(".py") else s for s in args.plugin]
    try:
        load_all(args.plugin)  # before the presets are checked: they may name the plugin's model or data
    except PluginError as e:
        raise UsageError(str(e)) from None
    name = args.name or (f"{args.confirm}-confirm" if args.confirm else args.preset)
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
    check_trackers(args.log)
    store = SweepFolder(args.storage, name)
    fixed, choices = compose(load_config_file(args.config) if args.config else ({}, {}),
                             (dict(args.overrides), dict(args.choices)), args.config)
    try:
        if args.confirm:
            preset = _confirm_preset(args, choices)
        else:
            preset = PRESETS[args.preset].with_choices(choices)
            preset = dataclasses.replace(preset, search=args.search or preset.search)
        preset = preset.with_overrides(fixed)
        preset.validate()
    except ConfigError as e:
        raise UsageError(str(e)) from None
    if preset.search == "grid" and args.num_samples not in (None, len(preset.grid())):
        raise UsageError(f"--num-samples={args.num_samples} is not allowed with --search grid, which runs each of "
                         f"its {len(preset.grid())} combinations once; drop --num-samples or use --search optuna")
    check_data_available(preset)
    if args.resume and not resume.has_state(store):
        raise UsageError(f"--resume: no sweep to resume at {store.dir}; run without --resume to start one")
    return preset, store


