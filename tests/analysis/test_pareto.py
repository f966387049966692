import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analysis import front, pareto
from analysis.load import final_rows
from lthray import results


def test_pareto_front_keeps_exactly_the_non_dominated_points():
    df = pd.DataFrame({
        "method": ["a"] * 6 + ["b"] * 2,
        "acc": [0.9, 0.8, 0.7, 0.85, 0.6, 0.9, 0.5, 0.4],
        "fid": [0.1, 0.5, 0.9, 0.4, 0.95, 0.05, 0.2, 0.3],
    })
    f = front.pareto_front(df, "acc", "fid")
    got = {(r.method, r.acc, r.fid) for r in f.itertuples()}
    # (0.85, 0.4) trades off with (0.9, 0.1) and (0.8, 0.5): on the front; (0.9, 0.05) is beaten by (0.9, 0.1)
    assert got == {("a", 0.9, 0.1), ("a", 0.85, 0.4), ("a", 0.8, 0.5), ("a", 0.7, 0.9), ("a", 0.6, 0.95),
                   ("b", 0.5, 0.2), ("b", 0.4, 0.3)}


def _write(_row, tmp_path, run, method, accs, fids, status="ok"):
    for level, (a, f) in enumerate(zip(accs, fids, strict=True)):
        results.write_row(tmp_path, _row(
            run_id=run, trial_id=run, method=method, level=level, density=0.5**level,
            status=status if level == len(accs) - 1 else "ok", test_acc=a, cam_spearman=f, cam_iou=f,
            concept_topk_overlap=None if f is None else min(1.0, f + 0.1),
            top_concepts=None if a is None else [f"{c}: c{level} | c{c}" for c in range(10)],
            probe_cams=None if a is None else [f] * (4 * 32 * 32),
        ))


def test_main_writes_plots_and_tables(make_row, tmp_path):
    res = tmp_path / "res"
    _write(make_row, res, "r1", "imp", [0.99, 0.98, 0.9], [1.0, 0.9, 0.7])
    _write(make_row, res, "r2", "imp", [0.99, 0.97, 0.95], [1.0, 0.8, 0.6])
    _write(make_row, res, "r3", "random", [0.99, 0.8, 0.5], [1.0, 0.5, 0.3])
    _write(make_row, res, "r4", "random", [0.99, None], [1.0, None], status="diverged")
    out = tmp_path / "out"
    assert pareto.main(["--results", str(res), "--out", str(out)]) == 0
    for name in ["pareto.png", "lth_curve.png", "concept_curve.png", "gallery.png"]:
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    shift = pd.read_csv(out / "concept_shift.csv")
    assert set(shift["method"]) == {"imp", "random"} and len(shift) == 2 * 10
    row = shift[(shift["method"] == "imp") & (shift["class"] == 3)].iloc[0]
    assert row["dense_top"] == "c0 | c3" and row["sparsest_top"] == "c2 | c3" and row["kept"] == "c3"
    assert row["lost"] == "c0" and row["gained"] == "c2"
    html = (out / "pareto.html").read_text()
    assert "vega" in html and "cdn.jsdelivr" not in html  # inline: no network needed to view
    front = pd.read_csv(out / "pareto_front.csv")
    cam_front = front[front["front"] == "cam_spearman"]
    assert set(cam_front["run_id"]) == {"r1", "r2", "r3"}  # r1 and r2 trade off; r4 diverged: left out
    assert set(front["front"]) == {"cam_spearman", "concept_topk_overlap"}
    trials = pd.read_csv(out / "trials.csv")
    assert "r4" not in set(trials["run_id"]) and len(trials) == 3


def test_final_rows_are_the_last_level_of_each_healthy_run(make_row, tmp_path):
    _write(make_row, tmp_path, "r1", "imp", [0.9, 0.8], [1.0, 0.5])
    _write(make_row, tmp_path, "r2", "imp", [0.9, None], [1.0, None], status="diverged")
    df = results.read(tmp_path).to_pandas()
    f = final_rows(df)
    assert f["run_id"].tolist() == ["r1"] and f["level"].tolist() == [1]


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "foreign", "file_out"])
def test_bad_results_are_refused_clearly(make_row, tmp_path, capsys, case):
    res = tmp_path / "res"
    out = tmp_path / "out"
    if case != "missing":
        res.mkdir()
    if case in ("corrupt", "foreign", "file_out"):
        _write(make_row, res, "r1", "imp", [0.9, 0.8], [1.0, 0.5])
    if case == "corrupt":
        (res / "zz.parquet").write_bytes(b"garbage")
    if case == "foreign":
        pq.write_table(pa.table({"x": [1]}), res / "zz.parquet")
    if case == "file_out":
        out.write_text("I am a file")
    assert pareto.main(["--results", str(res), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1
    expect = {"missing": "not a folder", "empty": "no result rows", "corrupt": "zz.parquet",
              "foreign": "zz.parquet", "file_out": "is a file"}[case]
    assert expect in err
    assert not out.is_dir()


def test_results_on_an_object_store_are_analysed(make_row, tmp_path):
    """The s3:// code path, on pyarrow's in-memory mock:// filesystem (same process, no network)."""
    uri = "mock://bucket/sweep/results"
    _write(make_row, uri, "r1", "imp", [0.99, 0.9], [1.0, 0.7])
    _write(make_row, uri, "r2", "random", [0.99, 0.5], [1.0, 0.3])
    assert pareto.main(["--results", uri, "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "pareto.png").exists()
    assert set(pd.read_csv(tmp_path / "out" / "trials.csv")["run_id"]) == {"r1", "r2"}


def test_density_table_compares_methods_at_matched_densities(make_row, tmp_path):
    res = tmp_path / "res"
    _write(make_row, res, "r1", "imp", [0.99, 0.9, 0.8], [1.0, 0.8, 0.6])  # densities 1, 0.5, 0.25
    _write(make_row, res, "r2", "imp", [0.97, 0.7, 0.6], [1.0, 0.6, 0.4])
    _write(make_row, res, "r3", "random", [0.99, 0.5, 0.2], [1.0, 0.3, 0.1])
    t = pareto.density_table(results.read(res).to_pandas())
    imp = t[t["method"] == "imp"].set_index("density_bin")
    assert list(imp.index) == ["dense", "0.25-0.5", "0.1-0.25"]
    assert imp.loc["0.25-0.5", "test_acc_mean"] == pytest.approx(0.8)
    assert imp.loc["0.25-0.5", "cam_spearman_std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    assert imp.loc["dense", "trials"] == 2
    assert t[t["method"] == "random"]["trials"].tolist() == [1, 1, 1]


def test_rows_and_configs_of_a_renamed_method_read_under_its_new_name(make_row, tmp_path):
    from analysis.load import load_rows
    from lthray.config import from_flat

    results.write_row(tmp_path, make_row(method="stability", config_json='{"prune.method": "stability"}'))
    assert load_rows(tmp_path)["method"].tolist() == ["movement_guided"]
    assert from_flat({"prune.method": "stability"}).prune.method == "movement_guided"
