import dataclasses
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from lthray import results


def test_write_once_and_readable_without_lthray(make_row, tmp_path):
    assert results.write_row(tmp_path, make_row(level=0))
    assert results.write_row(tmp_path, make_row(level=1, density=0.8))
    f = results.row_path(tmp_path, "run_x", 1)
    before = (f.stat().st_mtime_ns, f.read_bytes())
    assert not results.write_row(tmp_path, make_row(level=1, density=0.5, test_acc=0.1))  # never rewritten
    assert (f.stat().st_mtime_ns, f.read_bytes()) == before
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temp file left behind
    t = pads.dataset(str(tmp_path)).to_table()  # plain pyarrow
    assert t.num_rows == 2 and sorted(t["density"].to_pylist()) == [0.8, 1.0]
    import pandas as pd

    assert len(pd.read_parquet(tmp_path)) == 2
    assert results.read(tmp_path).schema.equals(results.SCHEMA)


def test_a_temp_file_left_beside_a_published_row_is_cleared_by_the_next_writer(make_row, tmp_path):
    """A writer SIGKILLed after its link but before its cleanup leaves its temp file; the resumed trial's
    write of that level finds the row published and clears the leftover."""
    assert results.write_row(tmp_path, make_row(level=0))
    final = results.row_path(tmp_path, "run_x", 0)
    stale = final.with_name(f".{final.name}.99999.deadbeef.tmp")
    stale.write_bytes(final.read_bytes())
    assert not results.write_row(tmp_path, make_row(level=0))
    assert not stale.exists() and results.read(tmp_path).num_rows == 1


def test_a_writer_whose_temp_file_was_cleared_gives_up_to_the_published_row(make_row, tmp_path, monkeypatch):
    """Two writers of one level: the first publishes and clears the other's temp file as stale; the other's
    link then finds no temp file, and it must give up (the row is there), not crash."""
    real_link = os.link

    def publish_first_then_link(src, dst):
        Path(dst).write_bytes(Path(src).read_bytes())  # the other writer won...
        Path(src).unlink()  # ...and cleared our temp file
        return real_link(src, dst)

    monkeypatch.setattr(results.os, "link", publish_first_then_link)
    assert not results.write_row(tmp_path, make_row(level=0))
    monkeypatch.setattr(results.os, "link", real_link)
    assert results.read(tmp_path).num_rows == 1
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]


def test_hidden_temp_files_are_invisible_to_readers(make_row, tmp_path):
    results.write_row(tmp_path, make_row())
    (tmp_path / ".run_y__L000.parquet.1234.tmp").write_bytes(b"half a file")
    assert pads.dataset(str(tmp_path)).to_table().num_rows == 1
    assert results.read(tmp_path).num_rows == 1


@pytest.mark.parametrize(
    "bad, msg",
    [
        ({"level": "0"}, "level"),
        ({"level": 1.5}, "level"),
        ({"density": "dense"}, "density"),
        ({"test_acc": True}, "test_acc"),
        ({"run_id": None}, "run_id"),
        ({"status": "exploded"}, "status"),
        ({"extra_col": 1}, "extra_col"),
    ],
)
def test_schema_is_enforced_at_write(make_row, tmp_path, bad, msg):
    with pytest.raises(results.SchemaError, match=msg):
        results.write_row(tmp_path, make_row(**bad))
    assert not list(tmp_path.iterdir())


def test_missing_column_fails(make_row, tmp_path):
    r = make_row()
    del r["cam_iou"]
    with pytest.raises(results.SchemaError, match="cam_iou"):
        results.write_row(tmp_path, r)


def test_nan_metrics_are_stored_as_null(make_row, tmp_path):
    results.write_row(tmp_path, make_row(cam_spearman=float("nan")))
    assert results.read(tmp_path)["cam_spearman"].to_pylist() == [None]


def test_read_names_foreign_and_corrupt_files(make_row, tmp_path):
    results.write_row(tmp_path, make_row())
    pq.write_table(pa.table({"a": [1]}), tmp_path / "foreign.parquet")
    with pytest.raises(results.ResultsError, match="foreign.parquet"):
        results.read(tmp_path)
    (tmp_path / "foreign.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(results.ResultsError, match="foreign.parquet"):
        results.read(tmp_path)


def test_schema_version_mismatch_is_refused(make_row, tmp_path):
    results.write_row(tmp_path, make_row())
    f = results.row_path(tmp_path, "run_x", 0)
    t = pq.read_table(f)
    pq.write_table(t.replace_schema_metadata({"lthray.schema_version": "99"}), f)
    with pytest.raises(results.ResultsError, match="schema version 99"):
        results.read(tmp_path)


def test_object_store_results_are_written_once(make_row):
    """s3:// storage goes through pyarrow.fs; mock:// is its in-memory twin (one per process)."""
    uri = "mock://bucket/t/results"
    assert results.write_row(uri, make_row(level=0))
    assert not results.write_row(uri, make_row(level=0, test_acc=0.1))
    assert results.write_row(uri, make_row(level=1))
    assert [p.rsplit("/", 1)[1] for p in results.result_files(uri)] == ["run_x__L000.parquet", "run_x__L001.parquet"]
    t = results.read(uri)
    assert t.num_rows == 2 and t["test_acc"].to_pylist() == [0.9, 0.9]


FIXTURE_V2 = Path(__file__).parents[1] / "fixtures" / "results_v2"


def test_results_written_by_schema_version_2_still_read():
    """A committed smoke trial written by schema version 2 (before rewind_spec existed)."""
    t = results.read(FIXTURE_V2)
    assert t.schema.equals(results.SCHEMA)
    assert t.num_rows == 3 and sorted(t["level"].to_pylist()) == [0, 1, 2]
    assert set(t["schema_version"].to_pylist()) == {2}  # rows say which version wrote them
    assert t["rewind_step"].to_pylist() == [5, 5, 5]
    assert t["rewind_spec"].to_pylist() == ["5it"] * 3  # derived from the iterations v2 kept
    assert t["test_acc"].to_pylist()[0] == pytest.approx(0.1388888888888889)


def test_schema_columns_come_from_the_level_record():
    names = [f.name for f in dataclasses.fields(results.LevelRecord)]
    assert results.SCHEMA.names == ["schema_version", *names, "created_at"]
    for f in dataclasses.fields(results.LevelRecord):
        assert f.metadata["doc"], f"column {f.name} has no one-line meaning"
        assert results.SCHEMA.field(f.name).nullable == f.metadata["nullable"]
    assert {"test_acc", "cam_spearman", "level", "density", "status"} <= set(results.REPORTED)
    assert "probe_cams" not in results.REPORTED  # maps stay out of Tune's result.json


def test_a_record_is_typed_and_writes_like_a_dict(make_row, tmp_path):
    row = make_row()
    rec = results.LevelRecord(**row)
    assert rec.to_row() == row
    assert results.write_row(tmp_path, rec)
    with pytest.raises(TypeError, match="tset_acc"):
        results.LevelRecord(**{**row, "tset_acc": 0.5})  # a misspelt column fails where it is made
    diverged = results.LevelRecord(**{k: v for k, v in row.items() if k not in ("test_acc", "cam_iou")})
    assert diverged.test_acc is None and diverged.cam_iou is None  # metrics default to null


def test_progress_line_shows_level_first_and_skips_missing(make_row):
    line = results.progress_line(make_row(level=3, density=0.125, test_acc=0.75))
    assert line.split()[:2] == ["level", "3"]
    assert "density 0.1250" in line and "acc 0.7500" in line and "imp" in line
    assert "acc" not in results.progress_line({"level": 1, "test_acc": None})


def test_progress_line_names_the_weights_a_method_set_and_no_others(make_row):
    arm = results.progress_line(make_row(method="imp_kd", kd_weight=0.1, lambda_fid=0.0, guidance_weight=0.0))
    assert "kd_weight=0.1" in arm and "lambda_fid" not in arm and "g=" not in arm
    fid = results.progress_line(make_row(method="imp_fid", lambda_fid=1.0, guidance_weight=0.0))
    assert "lambda_fid=1" in fid and "g=" not in fid
    assert "g=0.50" in results.progress_line(make_row(method="gradcam_guided", guidance_weight=0.5))
