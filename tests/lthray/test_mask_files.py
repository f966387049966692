"""Bit-packed mask side files: exact round trip, published once, checked on read, not taken for rows."""

import pyarrow.parquet as pq
import pytest
import torch

from lthray import mask_files, results
from lthray.results import ResultsError


def _mask(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.rand(5, 3, 3, 3, generator=g) > 0.5,
            "fc.weight": torch.rand(10, 13, generator=g) > 0.9}


def test_masks_round_trip_bit_for_bit_including_sizes_not_a_multiple_of_8(tmp_path):
    m0, m1 = _mask(0), _mask(1)
    assert mask_files.write(tmp_path, "run_a", 0, m0) and mask_files.write(tmp_path, "run_a", 1, m1)
    got = mask_files.read(tmp_path)
    assert set(got) == {("run_a", 0), ("run_a", 1)}
    for lvl, m in ((0, m0), (1, m1)):
        assert list(got[("run_a", lvl)]) == list(m)  # layers in model order
        for k in m:
            assert (got[("run_a", lvl)][k] == m[k].numpy()).all() and got[("run_a", lvl)][k].shape == m[k].shape


def test_a_mask_is_published_once_and_never_overwritten(tmp_path):
    assert mask_files.write(tmp_path, "run_a", 0, _mask(0))
    assert not mask_files.write(tmp_path, "run_a", 0, _mask(1))
    assert (mask_files.read(tmp_path)[("run_a", 0)]["fc.weight"] == _mask(0)["fc.weight"].numpy()).all()
    assert [p.name for p in (tmp_path / "_masks").iterdir()] == ["run_a__L000.parquet"]  # no temp files left


def test_mask_files_are_not_result_rows_and_rows_are_not_masks(tmp_path, make_row):
    import pandas as pd
    import pyarrow.dataset as ds

    mask_files.write(tmp_path, "run_x", 0, _mask(0))
    results.write_row(tmp_path, make_row())
    assert len(results.read(tmp_path)) == 1 and len(mask_files.read(tmp_path)) == 1
    # the README's plain readers of a results folder see the rows only (they recurse, but skip '_' folders)
    assert ds.dataset(str(tmp_path)).to_table().num_rows == 1 and len(pd.read_parquet(tmp_path)) == 1


def test_a_mask_file_whose_bits_disagree_with_its_count_is_refused(tmp_path):
    mask_files.write(tmp_path, "run_a", 0, _mask(0))
    path = tmp_path / "_masks" / "run_a__L000.parquet"
    t = pq.read_table(path)
    kept = t["kept"].to_pylist()
    kept[0] += 1
    pq.write_table(t.set_column(t.schema.get_field_index("kept"), "kept", [kept]).replace_schema_metadata(
        t.schema.metadata), path)
    with pytest.raises(ResultsError, match="bits set"):
        mask_files.read(tmp_path)
    path.write_bytes(b"not parquet")
    with pytest.raises(ResultsError, match="not a readable mask file"):
        mask_files.read(tmp_path)
