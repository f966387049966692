"""Adding a method is one module plus its registration: a toy guided method, declared here as its own
module would declare it, runs through a preset's grid, the level loop and the study report without
any other file knowing its name."""

import pandas as pd
import pytest
import torch

from lthray import masks, methods
from lthray.config import ConfigError, replace, to_flat
from lthray.masks import Scores, prunable
from lthray.methods import CRITERIA, METHODS, Method, Needs, ScoreContext
from lthray.presets import Preset
from lthray.trial import run_trial
from lthray.validate import check

SEEN: list[ScoreContext] = []


def toy(ctx: ScoreContext) -> Scores:
    """|w| times how far it moved: reads the start weights, which its Needs declare."""
    SEEN.append(ctx)
    start = ctx.need("start_weights")
    return {k: (w.detach().abs() * (w.detach() - start[k]).abs()) for k, w in prunable(ctx.model).items()
            if k in ctx.mask}


TOY = Method("magnitude", "toy", needs=Needs(start_weights=True), rewinds=("weight",),
             why_rewinds="a toy that only knows weight rewinding", paper="a test")


@pytest.fixture
def toy_registered(monkeypatch):
    # The two lines a method module has (CRITERIA.register / METHODS.register), undone after the test.
    monkeypatch.setitem(CRITERIA._items, "toy", toy)
    monkeypatch.setitem(METHODS._items, "toyprune", TOY)
    SEEN.clear()


def test_the_registry_says_what_the_toy_is(toy_registered):
    assert "toyprune" in methods.names(guided=True) and methods.is_guided("toyprune")
    assert "toyprune" not in methods.names(at_init=True)


def test_the_toys_config_checks_are_its_own(toy_registered, tiny_cfg):
    cfg = replace(tiny_cfg, **{"prune.method": "toyprune"})
    assert check(cfg) is cfg
    with pytest.raises(ConfigError, match="'weight' with prune.method='toyprune' \\(a toy that only knows"):
        check(replace(cfg, **{"prune.rewind": "lr"}))


def test_the_toy_runs_through_a_grid_the_level_loop_and_the_report(toy_registered, tiny_cfg, tmp_path):
    from analysis import report, stats

    base = {k: v for k, v in to_flat(tiny_cfg).items() if k != "prune.method"}
    preset = Preset("toy", base=base, space={"prune.method": ["imp", "toyprune"], "seed": [0, 1]},
                    guided_space={"prune.guidance_weight": [0.5]}, search="grid", num_samples=4)
    preset.validate()
    grid = preset.grid()
    assert sorted((p["prune.method"], p.get("prune.guidance_weight")) for p in grid) == [
        ("imp", None), ("imp", None), ("toyprune", 0.5), ("toyprune", 0.5)]  # guided: from its Method
    for i, p in enumerate(grid):
        run_trial(check(replace(tiny_cfg, **p)), tmp_path / f"w{i}", tmp_path / "results", sweep="toy")
    # the level loop gave the criterion what it declared, and nothing else
    assert len(SEEN) == 2 * 2  # two seeds x two pruned levels
    for ctx in SEEN:
        assert ctx.start_weights is not None and ctx.guide_maps is None and ctx.pcbm is None and ctx.guide_x is None
    from analysis.load import load_rows

    rows = load_rows(tmp_path / "results")
    assert set(rows["method"]) == {"imp", "toyprune"} and len(rows) == 4 * 3
    out = tmp_path / "report"
    report.build(rows, out, masks=report.masks_of(rows))
    diffs = pd.read_csv(out / "paired_differences.csv")
    assert set(diffs["method"]) == {"toyprune"} and diffs["method"].map(stats.is_guided).all()
    md = (out / "report.md").read_text()
    assert "toyprune" in md and "Guided methods against IMP" in md  # counted among the guided methods by the registry


def test_an_undeclared_input_is_named():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2))
    with pytest.raises(methods.MissingInput, match="start_weights"):
        toy(ScoreContext(model, masks.ones(model), 0, 1))
