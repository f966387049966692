"""The mission's search: a space whose every schedule ends at the target density, the Optuna study in
STORAGE/NAME/optuna.db (continued on --resume), the confirm of its Pareto set and the tracker callback."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from analysis.front import nondominated, pareto_set
from lthray import masks, results
from lthray.config import ConfigError, from_flat, run_id, to_json
from lthray.models import build
from lthray.presets import PRESETS, TARGET_DENSITY
from sweeps import cli
from sweeps.confirm import IMP, ConfirmError, confirm_preset
from sweeps.imp_vs_guided import main
from sweeps.store import SweepFolder


def test_the_default_sweep_is_the_64_trial_search():
    args = cli.parser().parse_args([])
    preset = PRESETS[args.preset]
    assert args.preset == "fashion-search" and preset.search == "optuna" and preset.num_samples == 64
    space = preset.space
    assert set(space["prune.levels"]) >= {1, 2, 4} and 1 in space["prune.levels"]  # one-shot and iterative
    assert set(space["prune.rewind"]) == {"weight", "lr", "finetune"} and "0it" in space["prune.rewind_step"]
    assert any(s.endswith("ep") for s in space["prune.rewind_step"]) and any(
        s.endswith("it") and s != "0it" for s in space["prune.rewind_step"])
    assert min(space["prune.guidance_weight"]) == 0 and max(space["prune.guidance_weight"]) == 1
    assert 0 in space["prune.lambda_fid"] and set(space["prune.scope"]) == {"global", "layer"}
    assert preset.base["prune.target_density"] == TARGET_DENSITY


@pytest.mark.parametrize("name", ["fashion-search", "fashion-search-demo"])
def test_every_schedule_of_the_search_reaches_the_target_to_one_weight(name):
    preset = PRESETS[name]
    model = build("convnet", 10, 0, 1)
    total = sum(w.numel() for w in masks.prunable(model).values())
    want = round(total * TARGET_DENSITY)
    g = torch.Generator().manual_seed(0)
    for levels in preset.space["prune.levels"]:
        for scope in preset.space["prune.scope"]:
            cfg = from_flat({**preset.base, "prune.levels": levels, "prune.scope": scope,
                             "prune.method": "cam_guided"}).prune
            assert cfg.density_at(levels) == TARGET_DENSITY
            mask = masks.ones(model)
            for level in range(1, levels + 1):
                scores = {k: torch.rand(m.shape, generator=g) for k, m in mask.items()}
                new = masks.prune_to(scores, mask, cfg.density_at(level), scope)
                assert all(bool((~m | o).all()) for m, o in zip(new.values(), mask.values(), strict=True))  # nested
                mask = new
            kept, _ = masks.count(mask)
            assert abs(kept - want) <= 1, (levels, scope, kept, want)
            if scope == "global":
                assert kept == want


def test_layer_scope_apportions_the_exact_total():
    sizes = {"a": 10, "b": 10, "c": 10}  # 3 x 0.5 weights at 5%: rounding each layer alone keeps 0 or 3
    assert sum(masks._apportion(sizes, 0.05).values()) == round(30 * 0.05) == 2
    assert masks._apportion({"a": 100, "b": 7}, 0.5) == {"a": 50, "b": 4}


def test_an_optuna_space_ending_at_several_densities_is_refused():
    p = PRESETS["smoke"].with_choices({"prune.rate": [0.3, 0.5]})
    with pytest.raises(ConfigError, match="schedules end at densities from 0.25 .* to 0.49"):
        p.validate()
    import dataclasses

    dataclasses.replace(p, search="grid").validate()  # a grid compares within a design: allowed
    p.with_overrides({"prune.target_density": 0.2}).validate()  # a declared end point: allowed


def test_nondominated_keeps_the_pareto_set_and_ties():
    v = np.array([[1, 0, 0], [0, 1, 0], [0.5, 0.5, 0], [0.4, 0.4, 0], [1, 0, 0]])
    assert nondominated(v).tolist() == [True, True, True, False, True]


def _search_rows(root: Path, name: str, trials: list[dict], make_row, *, complete: bool = True) -> SweepFolder:
    """A finished (or not) search folder: sweep.json and rows of smoke configs, levels 0..2."""
    store = SweepFolder(str(root), name)
    (root / name).mkdir(parents=True)
    store.write_text("sweep.json", json.dumps({"preset": "smoke", "signature": "x", "num_samples": len(trials),
                                               "search": "optuna"}))
    base = PRESETS["smoke"].base
    for i, t in enumerate(trials):
        flat = {**base, "prune.method": t["method"], "prune.guidance_weight": t.get("g", 0.0),
                "prune.rewind": t.get("rewind", "weight"), "seed": 0}
        cfg = from_flat(flat)
        levels = range(3) if complete or i else range(2)
        for level in levels:
            results.write_row(root / name / "results", {
                **make_row(), "run_id": run_id(cfg), "method": t["method"], "level": level,
                "density": 0.5**level, "guidance_weight": flat["prune.guidance_weight"], "seed": 0,
                "test_acc": t["acc"] if level == 2 else 0.9, "cam_spearman": t["cam"] if level == 2 else 1.0,
                "concept_topk_overlap": t["con"] if level == 2 else 1.0, "config_json": to_json(cfg)})
    return store


TRIALS = [
    {"method": "cam_guided", "g": 0.5, "acc": 0.8, "cam": 0.5, "con": 0.5},
    {"method": "cam_guided", "g": 1.0, "acc": 0.7, "cam": 0.4, "con": 0.4},  # dominated by the first
    # its old name: configs written before the rename read as movement_guided
    {"method": "stability", "g": 0.25, "rewind": "lr", "acc": 0.6, "cam": 0.9, "con": 0.3},
]


def test_confirm_runs_the_front_and_imp_at_its_schedule_with_fresh_seeds(tmp_path, make_row):
    store = _search_rows(tmp_path, "s", TRIALS, make_row)
    preset = confirm_preset(store, seeds=3)
    assert preset.name == "s-confirm" and preset.search == "grid"
    pts = preset.grid()
    assert {p["seed"] for p in pts} == {1, 2, 3}  # the search used seed 0
    guided = {(p["prune.method"], p["prune.guidance_weight"], p["prune.rewind"]) for p in pts}
    assert guided == {("cam_guided", 0.5, "weight"), ("movement_guided", 0.25, "lr"), ("imp", 0.0, "weight"),
                      ("imp", 0.0, "lr")}  # not the dominated g = 1.0; IMP at each front config's rewind
    assert len(pts) == 4 * 3
    for p in pts:
        if p["prune.method"] == "imp":
            assert all(p[k] == v for k, v in IMP.items())
    preset.with_overrides({"train.epochs": 1}).validate()  # --set reaches the confirm's configs
    assert all("train.epochs" not in p for p in preset.with_overrides({"train.epochs": 1}).points)


def test_confirm_refuses_a_missing_or_unfinished_search(tmp_path, capsys, make_row):
    with pytest.raises(ConfirmError, match="no sweep at"):
        confirm_preset(SweepFolder(str(tmp_path), "nothing"), 2)
    _search_rows(tmp_path, "half", TRIALS, make_row, complete=False)
    with pytest.raises(ConfirmError, match=r"unfinished \(2/3 trials complete\)"):
        confirm_preset(SweepFolder(str(tmp_path), "half"), 2)
    # and from the command line: one line, exit 2, no confirm sweep written
    assert main(["--confirm", "half", "--storage", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--confirm half: the search is unfinished" in err[0]
    assert not (tmp_path / "half-confirm").exists()


def test_an_uninstalled_tracker_is_refused_before_anything_starts(tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a))
    assert main(["--preset", "smoke", "--log", "wandb", "--storage", str(tmp_path), "--name", "w"]) == 2
    assert "--log wandb needs the 'wandb' module, which is not installed; pip install wandb" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_the_search_report_reads_one_density_and_names_the_front(tmp_path, make_row):
    from analysis.report import Report
    from analysis.search import search_section

    store = _search_rows(tmp_path, "s", TRIALS, make_row)
    rows = results.read(store.path("results")).to_pandas()
    out = tmp_path / "rep"
    out.mkdir()
    r = Report(out)
    search_section(r, rows, out, "s")
    r.write("t")
    md = (out / "report.md").read_text()
    assert "3 trials, each read at its last level: density 25%" in md
    assert "Pareto set at 25% density (2 of 3 trials)" in md and "single noisy trials" in md
    front = pd.read_csv(out / "pareto_set.csv")
    assert sorted(front["prune.method"]) == ["cam_guided", "movement_guided"]
    final = rows[rows["level"] == 2]
    assert len(pareto_set(final)) == 2


# ------------------------------------------------------------------------------------------- end to end
SMALL = ["--set", "train.epochs=1", "--set", "prune.levels=1", "--max-concurrent", "2"]


@pytest.mark.slow
def test_search_study_is_stored_resumed_after_kill_and_confirmed(tmp_path):
    """A 4-trial smoke search (Optuna, with --log mlflow) killed with SIGKILL mid-sweep, then --resume:
    the same Optuna study in optuna.db ends with every trial complete and its 3 values, every row once,
    every trial at one final density; the local MLflow store has a run per trial with its levels; then
    --confirm of it runs paired front and IMP configs and its report names them."""
    import optuna
    from mlflow.tracking import MlflowClient

    from tests.sweeps.conftest import Sweep

    sw = Sweep(tmp_path, "srch")
    # guided methods only, as in the mission's search: the front is then never IMP itself, and the
    # confirm pairs each front config with its IMP partner (which methods Optuna samples first is not
    # what this test is about)
    args = ("--num-samples", "4", "--log", "mlflow", "--choice", "prune.method=cam_guided,movement_guided", *SMALL)
    proc = sw.start(*args)
    sw.wait_for(proc, lambda: sw.rows() >= 4, "4 rows")
    sw.kill_tree(proc)
    out = sw.run(*args, "--resume", timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    counts = sw.counts()
    assert set(counts.values()) == {1}
    db = f"sqlite:///{tmp_path / 'srch' / 'optuna.db'}"
    assert optuna.get_all_study_names(db) == ["srch"]  # the resumed sweep continued the one study
    study = optuna.load_study(study_name="srch", storage=db)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) >= 4 and all(len(t.values) == 3 for t in done)
    rows = results.read(sw.results).to_pandas()
    last = rows.loc[rows.groupby("run_id")["level"].idxmax()]
    assert last["run_id"].nunique() >= 4 and last["density"].nunique() == 1
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'srch' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("srch")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) >= 4
    hist = client.get_metric_history(runs[0].info.run_id, "test_acc")
    assert 1 <= len(hist) <= 2 and all(0 <= h.value <= 1 for h in hist)

    import subprocess
    import sys

    from tests.sweeps.conftest import SCRIPT

    conf_results = tmp_path / "srch-confirm" / "results"
    out = subprocess.run([sys.executable, str(SCRIPT), "--confirm", "srch", "--seeds", "2", "--storage", str(tmp_path),
                          *SMALL], env=sw.env(), capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    crow = results.read(conf_results).to_pandas()
    crow_last = crow.loc[crow.groupby("run_id")["level"].idxmax()]
    assert len(set(crow["seed"])) == 2 and set(crow["seed"]).isdisjoint(set(rows["seed"]))  # fresh seeds
    guided = crow_last[crow_last["method"] != "imp"]
    assert len(guided) >= 1 and (crow_last["method"] == "imp").sum() >= 1
    # every front config has its IMP partner at the same seeds
    for _, r in guided.iterrows():
        flat = {**json.loads(r["config_json"]), **IMP}
        assert run_id(from_flat(flat)) in set(crow_last["run_id"])
    from analysis.pareto import main as pareto_main

    assert pareto_main(["--report-only", "--results", str(conf_results), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Confirm: the search's Pareto set against IMP" in md and "Holm" in md
    assert os.path.exists(tmp_path / "rep" / "confirm.csv")


def test_confirm_compares_only_at_the_last_level_and_holm_corrects(make_row):
    from analysis.inference import adjust
    from analysis.search import confirm_table

    base = {**PRESETS["smoke"].base, "prune.rewind": "weight"}
    rows = []
    for seed in (1, 2, 3):
        for method, g, acc in (("cam_guided", 0.5, 0.80 + 0.01 * seed), ("imp", 0.0, 0.70)):
            cfg = from_flat({**base, "prune.method": method, "prune.guidance_weight": g, "seed": seed})
            last = 2 if method == "cam_guided" or seed < 3 else 1  # IMP at seed 3 stopped at level 1
            for level in range(last + 1):
                rows.append(make_row(run_id=run_id(cfg), method=method, guidance_weight=g, seed=seed, level=level,
                                     density=0.5**level, test_acc=acc if level == 2 else 0.9,
                                     config_json=to_json(cfg)))
    t = confirm_table(pd.DataFrame(rows))
    assert len(t) == 1 and t.loc[0, "pairs"] == 2  # seed 3's IMP has no target-density row: not paired
    assert t.loc[0, "density"] == 0.25 and t.loc[0, "d_test_acc"] == pytest.approx(0.115)
    assert adjust(np.array([0.01, 0.04, 0.03])).tolist() == pytest.approx([0.03, 0.06, 0.06])  # Holm by hand
    with_nan = adjust(np.array([0.01, np.nan, 0.04, 0.03]))  # an untestable comparison is not counted
    assert np.isnan(with_nan[1]) and np.delete(with_nan, 1).tolist() == pytest.approx([0.03, 0.06, 0.06])
