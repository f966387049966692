"""Every --set, --choice and --config key reaches every trial as asked, for guided and unguided methods,
or is refused up front (exit 2, nothing written).

The fast half enumerates the configs each search would run (the grid, or a real Optuna study asking
with the sweep's define-by-run space, which is what raised 'dynamic value space' mid-sweep before); the
slow half runs real sweeps through Ray and reads the values back from the Parquet rows.
"""

import json

import optuna
import pytest

from lthray import results
from lthray.config import from_flat
from lthray.presets import is_guided
from sweeps import cli, imp_vs_guided
from sweeps.presets import sample

KEYS = {  # a key of each kind of space in the smoke preset, with a value it does not hold by default
    "prune.guidance_weight": (0.9, [0.1, 0.9]),  # guided-only space
    "prune.lambda_fid": (0.25, [0.0, 0.25]),  # the main space
    # the fixed base (prune.rate was the key here; sampling it now makes an Optuna search end at several
    # densities, which the sweep refuses: tests/sweeps/test_search.py)
    "train.epochs": (1, [1, 3]),
}


def _args(tmp_path, form, key, search):
    value, choices = KEYS[key]
    flags = ["--preset", "smoke", "--storage", str(tmp_path / "runs"), "--search", search]
    if form == "set":
        flags += ["--set", f"{key}={value}"]
    elif form == "choice":
        flags += ["--choice", f"{key}={','.join(map(str, choices))}"]
    else:
        doc = {"set": {key: value}} if form == "config-set" else {"choices": {key: choices}}
        (tmp_path / "sweep.json").write_text(json.dumps(doc))
        flags += ["--config", str(tmp_path / "sweep.json")]
    return cli.parser().parse_args(flags)


def _configs(preset, search):
    if search == "grid":
        return [from_flat({**preset.base, **p}) for p in preset.grid()]
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    out = []
    for _ in range(40):
        trial = study.ask()
        out.append(from_flat({**preset.base, **sample(preset, trial)}))
        study.tell(trial, 0.0)
    return out


@pytest.mark.parametrize("search", ["grid", "optuna"])
@pytest.mark.parametrize("key", list(KEYS))
@pytest.mark.parametrize("form", ["set", "choice", "config-set", "config-choice"])
def test_every_override_form_reaches_every_method(tmp_path, form, key, search):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    preset, _ = cli.validate(_args(tmp_path, form, key, search))
    cfgs = _configs(preset, search)
    section, name = key.split(".")
    seen: dict[bool, set] = {True: set(), False: set()}
    for c in cfgs:
        seen[is_guided(c.prune.method)].add(getattr(getattr(c, section), name))
    value, choices = KEYS[key]
    assert seen[True] and seen[False], "the sweep must cross guided and unguided methods"
    if form in ("set", "config-set"):
        assert seen[True] == seen[False] == {value}  # fixed for every trial, guided or not
    elif key == "prune.guidance_weight":  # sampled for guided methods; unguided ones do not use it
        assert seen[True] == set(choices) and seen[False] == {0.0}
    else:
        assert seen[True] == seen[False] == set(choices)


def test_a_flag_replaces_the_config_files_setting_of_the_same_key(tmp_path):
    (tmp_path / "c.yaml").write_text("set: {prune.guidance_weight: 0.3}\nchoices: {prune.lambda_fid: [0.0, 0.5]}\n")
    args = cli.parser().parse_args(["--preset", "smoke", "--storage", str(tmp_path / "runs"), "--config",
                                    str(tmp_path / "c.yaml"), "--choice", "prune.guidance_weight=0.1,0.9",
                                    "--set", "prune.lambda_fid=0.25"])
    preset, _ = cli.validate(args)
    assert preset.guided_space["prune.guidance_weight"] == [0.1, 0.9] and "prune.guidance_weight" not in preset.base
    assert preset.base["prune.lambda_fid"] == 0.25 and "prune.lambda_fid" not in preset.space


@pytest.mark.parametrize("flags, config", [
    (["--set", "prune.guidance_weight=0.2", "--choice", "prune.guidance_weight=0.1,0.9"], None),
    ([], "set: {prune.rate: 0.4}\nchoices: {prune.rate: [0.3, 0.5]}\n"),
])
def test_one_key_both_fixed_and_sampled_is_refused(tmp_path, capsys, flags, config):
    extra = []
    if config:
        (tmp_path / "c.yaml").write_text(config)
        extra = ["--config", str(tmp_path / "c.yaml")]
    storage = tmp_path / "runs"
    assert imp_vs_guided.main(["--preset", "smoke", "--storage", str(storage), *flags, *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "both fix and sample" in err[0]
    assert not storage.exists()


def _rows(sweep):
    table = results.read(sweep.results).to_pylist()
    return [{**r, "cfg": json.loads(r["config_json"])} for r in table]


@pytest.mark.slow
def test_grid_sweep_rows_hold_every_override(sweep, tmp_path):
    (tmp_path / "c.yaml").write_text("set: {prune.rate: 0.4}\nchoices: {seed: [1]}\n")
    out = sweep.run("--search", "grid", "--config", str(tmp_path / "c.yaml"), "--set", "prune.guidance_weight=0.9",
                    "--choice", "prune.method=imp,cam_guided", "--set", "prune.lambda_fid=0", "--set",
                    "prune.rewind=weight", "--set", "prune.rewind_step=0it", timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = _rows(sweep)
    assert {r["method"] for r in rows} == {"imp", "cam_guided"} and len(rows) == 2 * 3
    for r in rows:
        assert r["guidance_weight"] == 0.9 and r["cfg"]["prune.guidance_weight"] == 0.9  # --set, both methods
        assert r["cfg"]["prune.rate"] == 0.4 and r["seed"] == 1  # --config set and choices
    assert all(abs(r["density"] - 0.6) < 1e-3 for r in rows if r["level"] == 1)  # the rate really applied


@pytest.mark.slow
def test_optuna_sweep_rows_hold_every_override(sweep, tmp_path):
    (tmp_path / "c.yaml").write_text("set: {prune.guidance_weight: 0.3, train.epochs: 1}\n"
                                     "choices: {prune.method: [imp, cam_guided]}\n")
    out = sweep.run("--num-samples", "4", "--config", str(tmp_path / "c.yaml"), "--choice",
                    "prune.guidance_weight=0.1,0.9", "--set", "prune.lambda_fid=0", "--set", "seed=0", timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = _rows(sweep)
    assert len({r["run_id"] for r in rows}) >= 2 and {r["lambda_fid"] for r in rows} == {0.0}
    for r in rows:
        assert r["cfg"]["train.epochs"] == 1 and r["seed"] == 0
        if r["method"] == "cam_guided":  # the flag's choice, not the file's 0.3
            assert r["guidance_weight"] in (0.1, 0.9)
        else:
            assert r["method"] == "imp" and r["guidance_weight"] == 0.0
