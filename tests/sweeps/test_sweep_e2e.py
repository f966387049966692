"""The sweep end to end through Ray: into Parquet, then analysed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lthray import results

pytestmark = pytest.mark.slow


def test_smoke_sweep_writes_every_level_once_and_the_analysis_plots_it(sweep, tmp_path):
    out = sweep.run("--num-samples", "2", timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "level 2" in out.stdout  # progress: one line per finished level
    counts = sweep.counts()
    assert len({rid for rid, _ in counts}) == 2
    assert sorted({lvl for _, lvl in counts}) == [0, 1, 2]
    assert len(counts) == 2 * 3 and set(counts.values()) == {1}
    table = results.read(sweep.results).to_pandas()
    assert (table["sweep"] == "t").all() and table["trial_id"].nunique() == 2
    assert table.groupby("run_id")["density"].min().round(3).tolist() == [0.25, 0.25]
    assert table["pcbm_acc"].notna().all() and table["concept_topk_overlap"].between(0, 1).all()

    an = subprocess.run([sys.executable, "-m", "analysis.pareto", "--results", str(sweep.results),
                         "--out", str(tmp_path / "an")], env=sweep.env(), capture_output=True, text=True,
                        cwd=sweep.root, timeout=300)
    assert an.returncode == 0, an.stderr
    png = tmp_path / "an" / "pareto.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert (tmp_path / "an" / "gallery.png").exists()
    assert "<script" in (tmp_path / "an" / "pareto.html").read_text()


def test_grid_sweep_runs_each_combination_once_shares_level_0_and_resume_fills_only_the_gaps(sweep):
    import shutil

    flags = ["--search", "grid", "--choice", "prune.method=imp,random,cam_guided", "--set", "prune.rewind=weight",
             "--set", "prune.rewind_step=0it", "--set", "prune.lambda_fid=0"]
    out = sweep.run(*flags, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = results.read(sweep.results).to_pandas()
    pairs = table.groupby(["method", "seed"])["run_id"].nunique()
    assert pairs.to_dict() == {(m, s): 1 for m in ("cam_guided", "imp", "random") for s in (0, 1)}
    assert set(sweep.counts().values()) == {1} and len(sweep.counts()) == 6 * 3
    # 3 methods x 2 seeds: level 0 trained exactly twice, once per seed; the others reused it
    dense = table[table["level"] == 0]
    assert dense["shared_from"].isna().sum() == 2 and dense.groupby("seed")["shared_from"].apply(
        lambda v: v.isna().sum()).tolist() == [1, 1]
    assert (dense.loc[dense["shared_from"].notna(), "train_seconds"] == 0).all()
    for _, g in dense.groupby("seed"):  # every method at one seed measures the same dense network
        assert g["test_acc"].nunique() == 1 and g["cam_faithfulness"].nunique() == 1
    # lose one trial completely (rows and checkpoint folder): a rerun runs exactly that one again
    lost = table[(table["method"] == "random") & (table["seed"] == 1)]["run_id"].iloc[0]
    for f in sweep.results.glob(f"{lost}__*.parquet"):
        f.unlink()
    shutil.rmtree(sweep.storage / sweep.name / "runs" / lost)
    again = sweep.run(*flags, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    counts = sweep.counts()
    assert len(counts) == 6 * 3 and set(counts.values()) == {1}
    assert {rid for rid, _ in counts} == set(table["run_id"])
    again_rows = results.read(sweep.results).to_pandas()
    redone = again_rows[(again_rows["run_id"] == lost) & (again_rows["level"] == 0)]
    assert redone["shared_from"].notna().all()  # its dense level came from the store, not trained again


def test_an_lrp_guided_grid_runs_end_to_end_and_its_report_has_the_explanation_sections(sweep, tmp_path):
    fixed = ["--set", "prune.rewind=weight", "--set", "prune.rewind_step=0it", "--set", "prune.lambda_fid=0.0",
             "--set", "data.dataset=fashion_mnist", "--set", "data.train_size=1000", "--set", "concepts.enabled=false"]
    out = sweep.run("--search", "grid", "--choice", "prune.method=imp,lrp_guided", "--choice", "seed=0,1", *fixed,
                    timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = results.read(sweep.results).to_pandas()
    assert sorted(table["method"].unique()) == ["imp", "lrp_guided"] and len(table) == 4 * 3
    assert table["lrp_energy_inside"].between(0, 1).all() and table["cam_pointing"].between(0, 1).all()
    an = subprocess.run([sys.executable, "-m", "analysis.pareto", "--results", str(sweep.results),
                         "--out", str(tmp_path / "an")], env=sweep.env(), capture_output=True, text=True,
                        cwd=sweep.root, timeout=300)
    assert an.returncode == 0, an.stderr
    md = (tmp_path / "an" / "report.md").read_text()
    for section in ("(b2) Where Grad-CAM looks", "(b3) A second attribution method", "(b4) Sanity check"):
        assert section in md
    assert "lrp_guided" in md


def test_a_plugin_sweep_runs_through_ray_to_rows_and_a_report(sweep, tmp_path):
    """The user's own model (torchvision ResNet-18) and data (a synthetic set), from a plugin file: imported by
    the driver and by every Ray worker, through a two-level sweep to rows, then the report."""
    plugin = str(sweep.root / "examples" / "plugin_resnet18.py")
    out = sweep.run("--plugin", plugin, "--search", "grid", "--choice", "prune.method=imp", "--choice", "seed=0",
                    "--set", "model.name=tv_resnet18", "--set", "data.dataset=stripes",
                    "--set", "concepts.enabled=false", "--set", "train.epochs=1", "--set", "prune.rewind_step=0it",
                    "--set", "prune.lambda_fid=0", "--set", "prune.rewind=weight", timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = results.read(sweep.results).to_pandas()
    assert set(table["model"]) == {"tv_resnet18"} and set(table["dataset"]) == {"stripes"}
    assert sorted(table["level"]) == [0, 1, 2]
    an = subprocess.run([sys.executable, "-m", "analysis.pareto", "--report-only", "--plugin", plugin, "--results",
                         str(sweep.results), "--out", str(tmp_path / "an")], env=sweep.env(), capture_output=True,
                        text=True, cwd=sweep.root, timeout=300)
    assert an.returncode == 0, an.stderr
    assert "tv_resnet18" in (tmp_path / "an" / "report.md").read_text()
