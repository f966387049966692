"""The preservation study's anchor design (preset cifar10-preserve) end to end on a small synthetic
CIFAR-10 archive: CIFAR-10 cannot be had here and ResNet-20 at full length needs a GPU, so this checks
that every piece runs - the real torchvision loader, ResNet-20, the three arms sharing IMP's masks, LRP
and occlusion, the report's decision rule - at a size a CPU test affords."""

import numpy as np
import pandas as pd
import pytest

from lthray import mask_files, presets
from lthray.config import ConfigError
from lthray.trial import run_trial
from lthray.validate import checked_config


def test_cifar10_preserve_runs_end_to_end_on_a_synthetic_archive(synthetic_cifar, tmp_path):
    from analysis.load import load_rows
    from analysis.report.build import build

    preset = presets.PRESETS["cifar10-preserve"]
    assert preset.base["model.name"] == "resnet20" and preset.base["prune.rate"] == 0.36
    small = {"train.epochs": 2, "prune.levels": 4, "prune.rewind_step": "1it", "data.probe_size": 8,
             "explain.guide_size": 16, "explain.fid_batch": 8, "concepts.enabled": False,
             "explain.faithfulness": "confidence_drop", "train.batch_size": 64,
             "data.train_size": 240}  # the archive's 5 x 48 images: the schedule counts steps from this size
    points = [p for p in preset.grid() if p["seed"] == 0]
    assert [p["prune.method"] for p in points] == ["imp", "imp_fid", "imp_kd"]
    rows = []
    for p in points:
        cfg = checked_config({**preset.base, **p, **small})
        rows += run_trial(cfg, tmp_path / "w" / p["prune.method"], tmp_path / "r", shared=tmp_path / "shared")
    d = pd.DataFrame(rows)
    assert set(d["method"]) == {"imp", "imp_fid", "imp_kd"} and d["occlusion_spearman"].notna().all()
    stored = mask_files.read(tmp_path / "r")
    by = {(r["method"], r["level"]): stored[(r["run_id"], r["level"])] for r in rows}
    for level in range(1, 5):
        for arm in ("imp_fid", "imp_kd"):
            assert all(np.array_equal(by[("imp", level)][k], by[(arm, level)][k]) for k in by[("imp", level)])
    assert abs(d[d["level"] == 4]["density"].iloc[0] - 0.168) < 0.01  # open_lth's 16.8% at level 4
    report = build(load_rows(tmp_path / "r"), tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    assert report.exists() and "The preservation rule" in text and "inconclusive with 1 seeds" in text


def test_files_of_another_size_than_the_schedule_counts_are_refused(synthetic_cifar, tmp_path):
    # without data.train_size the schedule counts CIFAR-10's 50,000 images: 240 would train 200x long
    preset = presets.PRESETS["cifar10-preserve"]
    cfg = checked_config({**preset.base, **preset.grid()[0], "concepts.enabled": False})
    with pytest.raises(ConfigError, match=r"loaded 240 training images but the schedule counts 50000.*"
                                          r"data.train_size=240"):
        run_trial(cfg, tmp_path / "w", tmp_path / "r", shared=tmp_path / "shared")
