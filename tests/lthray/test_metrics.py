"""The metric record (lthray.metrics): one registration, and the metric is computed by the level loop,
stored in the row, and found in the per-seed table, the summary and the report - no other file touched."""

import pandas as pd
import pytest
import torch

from lthray import metrics
from lthray.config import replace
from lthray.metrics import Metric
from lthray.trial import run_trial
from lthray.validate import check


@pytest.fixture
def toy_metric():
    def mean_abs_weight(model: torch.nn.Module, data) -> float:  # any f(model, data) -> float
        return float(torch.cat([p.detach().abs().flatten() for p in model.parameters()]).mean())

    m = metrics.register(Metric("toy_mean_abs_weight", "toy mean absolute weight", range=(0.0, 10.0), margin=0.001,
                                role="headline", compute=mean_abs_weight))
    yield m
    metrics.unregister(m.name)


def test_a_metric_added_through_its_record_alone_reaches_tables_and_report(toy_metric, tiny_cfg, tmp_path):
    from analysis import report
    from analysis.load import load_rows

    for method in ("imp", "random"):
        for seed in (0, 1):
            cfg = check(replace(tiny_cfg, **{"prune.method": method, "seed": seed}))
            run_trial(cfg, tmp_path / f"w-{method}-{seed}", tmp_path / "results", sweep="toy")
    rows = load_rows(tmp_path / "results")
    assert rows["toy_mean_abs_weight"].notna().all() and (rows["toy_mean_abs_weight"] > 0).all()
    # pruning removes weights, so the mean |weight| over all weights falls with density: it was really measured
    imp = rows[rows["method"] == "imp"].groupby("level")["toy_mean_abs_weight"].mean()
    assert imp[2] < imp[0]
    out = tmp_path / "report"
    report.build(rows, out)
    per_seed, summary = pd.read_csv(out / "per_seed.csv"), pd.read_csv(out / "summary.csv")
    assert per_seed["toy_mean_abs_weight"].notna().all()
    assert {"toy_mean_abs_weight", "toy_mean_abs_weight_lo", "toy_mean_abs_weight_hi"} <= set(summary.columns)
    diffs = pd.read_csv(out / "paired_differences.csv")
    assert {"d_toy_mean_abs_weight", "toy_mean_abs_weight_verdict"} <= set(diffs.columns)
    md = (out / "report.md").read_text()
    assert md.count("toy mean absolute weight") >= 2  # the metrics table and the comparisons against IMP


def test_an_unregistered_metric_is_gone_everywhere():
    from analysis import inference, stats

    m = metrics.register(Metric("toy_gone", "gone", margin=0.5))
    assert stats.METRICS["toy_gone"] == "gone" and inference.MARGINS["toy_gone"] == 0.5
    metrics.unregister("toy_gone")
    assert "toy_gone" not in stats.METRICS and "toy_gone" not in inference.MARGINS
    assert m not in metrics.all_metrics()


def test_two_metrics_of_one_name_are_refused():
    with pytest.raises(ValueError, match="already registered"):
        metrics.register(Metric("test_acc", "again"))
