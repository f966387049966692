"""`lthray select`: per run, the sparsest level that keeps dense accuracy and stays within its floors."""

import pandas as pd
import pytest

from analysis import select


def _run(make_row, run_id, seed, accs, cams, floor):
    return [make_row(run_id=run_id, seed=seed, level=lv, density=0.5 ** lv, test_acc=a, cam_spearman=c,
                     floor_cam_spearman=floor if lv == 0 else None, config_json=f'{{"seed": {seed}}}')
            for lv, (a, c) in enumerate(zip(accs, cams, strict=True))]


def test_the_sparsest_level_that_keeps_accuracy_and_its_floor_is_selected(make_row):
    rows = pd.DataFrame(
        _run(make_row, "a", 0, [0.90, 0.91, 0.895, 0.85], [1.0, 0.9, 0.8, 0.5], floor=0.75)  # level 3 loses acc
        + _run(make_row, "b", 1, [0.90, 0.90, 0.90, 0.90], [1.0, 0.9, 0.7, 0.8], floor=0.75))  # 2 below its floor
    t = select.select(rows, margin=0.01, metrics=("cam_spearman", "lrp_spearman"))  # lrp never measured: ignored
    assert t.set_index("run_id")["level"].to_dict() == {"a": 2, "b": 3}  # b: 3 passes though 2 did not
    assert list(t.columns[-2:]) == ["cam_spearman", "cam_spearman_floor"]
    # no margin: a's level 2 (0.895 < 0.90) no longer qualifies, its level 1 (0.91) does
    assert select.select(rows, margin=0.0).set_index("run_id")["level"].to_dict() == {"a": 1, "b": 3}
    assert select.select(rows, margin=0.0, metrics=()).set_index("run_id")["level"].to_dict() == {"a": 1, "b": 3}


@pytest.mark.parametrize("flags, words", [
    (["--metric", "nope"], "--metric='nope' is not a metric"),
    (["--margin", "2"], "--margin=2.0 is not in [0, 1)"),
    (["--format", "x"], "--format='x' is not one of"),
])
def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys, flags, words):
    assert select.main(["--results", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
