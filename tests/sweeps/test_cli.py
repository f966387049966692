"""Bad flags and configs are refused up front: one line naming the value and what is allowed, exit 2,
nothing written. (These run in-process: validation happens before Ray is imported.)"""

import dataclasses
import json
import os

import pytest

from lthray.presets import PRESETS
from sweeps import imp_vs_guided as cli
from sweeps.cli import check_data_available


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--preset", "imagenet-vit"], ["imagenet-vit", "digits", "smoke"]),
        (["--num-samples", "0"], ["--num-samples=0", ">= 1"]),
        (["--num-samples", "lots"], ["lots", "integer"]),
        (["--max-concurrent", "-2"], ["--max-concurrent=-2", ">= 1"]),
        (["--gpus-per-trial", "-0.5"], ["-0.5", ">= 0"]),
        (["--gpus-per-trial", "1.5"], ["1.5", "fraction"]),
        (["--cpus-per-trial", "0"], ["--cpus-per-trial=0", "> 0"]),
        (["--max-failures", "-1"], ["--max-failures=-1", ">= 0"]),
        (["--name", "../escape"], ["../escape", "letters"]),
        (["--set", "prune.rate=1.5"], ["prune.rate=1.5", "(0, 1)"]),
        (["--set", "prune.target_density=0"], ["prune.target_density=0", "(0, 1]"]),
        (["--set", "prune.rewind_step=999ep"], ["999ep", "before the end of training"]),
        (["--set", "prune.rewind_step=-4it"], ["-4it", ">= 0"]),
        (["--set", "model.name=resnet1000"], ["resnet1000", "resnet20", "vgg11_bn"]),
        (["--set", "prune.method=magic"], ["magic", "imp", "random"]),
        (["--set", "bogus.key=1"], ["bogus.key", "train.epochs"]),
        (["--set", "novalue"], ["novalue", "KEY=VALUE"]),
        (["--resume"], ["--resume", "no sweep to resume"]),
        (["--choice", "train.lr="], ["train.lr=", "KEY=V1,V2"]),
        (["--choice", "prune.rate=0.5,1.5"], ["prune.rate", "1.5", "(0, 1)"]),
        (["--choice", "prune.method=imp,voodoo"], ["voodoo", "cam_guided", "movement_guided"]),
        (["--config", "/nonexistent/sweep.yaml"], ["/nonexistent/sweep.yaml", "JSON or YAML"]),
        (["--choice", "prune.method=imp,synflow", "--set", "prune.rewind=lr"], ["prune.rewind='lr'", "'weight' with"]),
        (["--set", "instability.points=5"], ["instability.points=5", "[11, 101]"]),
        (["--set", "prune.pai_iterations=0"], ["prune.pai_iterations=0", "[1, 1000]"]),
        # a density no schedule can reach without cutting a layer off entirely
        (["--set", "prune.target_density=0.00001"], ["prune.target_density=1e-05", "one weight per prunable layer"]),
        (["--set", "prune.rate=0.99", "--set", "prune.levels=4"], ["prune.rate=0.99", "density >= 8.2e-05"]),
    ],
)
def test_bad_input_is_refused_with_one_line_and_exit_2(tmp_path, capsys, flags, words):
    storage = tmp_path / "runs"
    with pytest.raises(SystemExit) as e:
        raise SystemExit(cli.main(["--storage", str(storage), "--preset", "smoke", *flags]))
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    last = err[-1]
    for w in words:
        assert w in last, (w, last)
    assert not storage.exists()  # nothing written


@pytest.mark.parametrize(
    "text, words",
    [
        ("set: {prune.levels: 0}", ["prune.levels=0", "[1, 100]"]),
        ("set: [1, 2]", ["'set' and 'choices' must be mappings"]),
        ("choices: {train.lr: 0.1}", ["choices.train.lr=0.1", "non-empty list"]),
        ("sweep: {}", ["['sweep']", "'set' and/or 'choices'"]),
        ("- just\n- a list", ["list", "'set' and/or 'choices'"]),
        ("set: {a: [unclosed", ["not valid JSON/YAML"]),
        ('{"set": {"model.name": "alexnet"}}', ["alexnet", "resnet20"]),
    ],
)
def test_bad_config_files_are_refused(tmp_path, capsys, text, words):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(text)
    storage = tmp_path / "runs"
    assert cli.main(["--storage", str(storage), "--preset", "smoke", "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")
    for w in words:
        assert w in err[0], (w, err[0])
    assert not storage.exists()


def test_config_file_and_flags_compose(tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text("set: {train.epochs: 3}\nchoices: {train.lr: [0.05, 0.1]}\n")
    args = cli.parser().parse_args(["--preset", "smoke", "--config", str(cfg), "--set", "train.epochs=4",
                                    "--storage", str(tmp_path / "runs")])
    preset, _ = cli.validate(args)
    assert preset.base["train.epochs"] == 4  # flags win over the file
    assert preset.space["train.lr"] == [0.05, 0.1] and "train.lr" not in preset.base


def test_storage_that_is_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    assert cli.main(["--storage", str(f), "--preset", "smoke"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert f.read_text() == "x"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write to a read-only-mode folder")
def test_unwritable_storage_is_refused(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    assert cli.main(["--storage", str(ro / "runs"), "--preset", "smoke"]) == 2
    assert "not writable" in capsys.readouterr().err


def test_resume_with_a_changed_search_space_is_refused(tmp_path, capsys):
    exp = tmp_path / "smoke"
    exp.mkdir()
    (exp / "tuner.pkl").write_bytes(b"")
    (exp / "sweep.json").write_text(json.dumps({"preset": "smoke", "signature": "0000", "num_samples": 2}))
    assert cli.main(["--storage", str(tmp_path), "--preset", "smoke", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "cannot resume" in err and "signature" in err
    assert sorted(p.name for p in exp.iterdir()) == ["sweep.json", "tuner.pkl"]


def test_every_preset_is_valid():
    for p in cli.PRESETS.values():
        p.validate()


def test_the_study_grid_pairs_every_method_with_every_seed_once():
    p = cli.PRESETS["fashion"]
    grid = p.grid()
    methods = ["imp", "random", "cam_guided", "concept_guided", "lrp_guided", "movement_guided"]
    assert p.search == "grid" and len(grid) == len({json.dumps(g, sort_keys=True) for g in grid}) == 5 * len(methods)
    by_method = {}
    for g in grid:
        by_method.setdefault(g["prune.method"], set()).add(g["seed"])
        guided = g["prune.method"] in {"cam_guided", "concept_guided", "lrp_guided", "movement_guided"}
        assert ("prune.guidance_weight" in g) == guided
    assert set(by_method) == set(methods)
    assert all(seeds == {0, 1, 2, 3, 4} for seeds in by_method.values())
    # seed by seed: a study cut short has every method at the seeds it reached
    assert [g["seed"] for g in grid] == sorted(g["seed"] for g in grid)


def test_grid_search_refuses_a_num_samples_it_would_ignore(tmp_path, capsys):
    code = cli.main(["--storage", str(tmp_path), "--preset", "smoke", "--search", "grid", "--num-samples", "3"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--search grid" in err[0] and "combinations" in err[0]
    assert not list(tmp_path.iterdir())


def test_an_override_of_a_guided_key_reaches_the_guided_configs():
    p = cli.PRESETS["fashion"].with_overrides({"prune.guidance_weight": 0.9})
    assert {g.get("prune.guidance_weight") for g in p.grid()} == {None}  # no longer searched...
    assert p.base["prune.guidance_weight"] == 0.9  # ...but fixed for every trial


def test_a_choice_of_a_guided_key_is_sampled_for_guided_methods_only():
    p = cli.PRESETS["fashion"].with_choices({"prune.guidance_weight": [0.1, 0.9]})
    assert "prune.guidance_weight" not in p.space and p.guided_space["prune.guidance_weight"] == [0.1, 0.9]
    gs = {(g["prune.method"], g.get("prune.guidance_weight")) for g in p.grid()}
    assert ("cam_guided", 0.1) in gs and ("cam_guided", 0.9) in gs and ("imp", None) in gs


def test_a_corrupt_dataset_is_refused_before_ray_starts(tmp_path, monkeypatch, capsys):
    from lthray import data
    from lthray.datasets import fashion_mnist

    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for f in fashion_mnist.FILES.values():
        (folder / f.name).write_bytes(b"\x1f\x8b\x08\x00 cut off")
    monkeypatch.setenv("LTHRAY_DATA", str(tmp_path / "data"))
    data.load.cache_clear()
    storage = tmp_path / "runs"
    assert cli.main(["--storage", str(storage), "--preset", "fashion-demo"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train-images-idx3-ubyte.gz" in err[0] and "dataset-fashion-mnist" in err[0]
    assert not storage.exists()
    data.load.cache_clear()


def test_data_of_another_size_than_the_schedule_counts_is_refused_before_ray_starts(synthetic_cifar, tmp_path,
                                                                                    capsys):
    storage = tmp_path / "runs"
    assert cli.main(["--storage", str(storage), "--preset", "cifar10-preserve"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loaded 240 training images but the schedule counts 50000" in err[0]
    assert not storage.exists()
    preset = PRESETS["cifar10-preserve"]
    check_data_available(dataclasses.replace(  # the same archive with the size it has passes
        preset, base={**preset.base, "data.train_size": 240, "concepts.enabled": False}))
