"""Pins a run_id and every level's values for one fixed smoke trial, recorded before the code was
reshaped into stages (tests/fixtures/golden_smoke.json): refactoring must not change what a trial computes.

One torch thread: float sums in another thread count differ in the last bits, enough to flip a
concept's rank."""

import json
from pathlib import Path

import pytest
import torch

from lthray.config import from_flat, run_id
from lthray.lottery import run_trial
from sweeps.presets import PRESETS

GOLDEN = Path(__file__).parents[1] / "fixtures" / "golden_smoke.json"
FLAT = {**PRESETS["smoke"].base, "prune.method": "imp", "prune.rewind": "weight", "prune.rewind_step": "5it",
        "prune.lambda_fid": 0.0, "seed": 0}


@pytest.fixture
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_smoke_trial_matches_the_recorded_run(tmp_path, one_thread):
    want = json.loads(GOLDEN.read_text())
    cfg = from_flat(FLAT)
    assert run_id(cfg) == want[0]["run_id"] == "run_a01f2a2ea0255862"
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r", device="cpu")
    assert len(rows) == len(want)
    for got, exp in zip(rows, want, strict=True):
        for key, v in exp.items():
            if isinstance(v, float):
                assert got[key] == pytest.approx(v, rel=1e-9, abs=1e-12), (exp["level"], key)
            else:
                assert got[key] == v, (exp["level"], key)
        assert got["rewind_spec"] == "5it"
