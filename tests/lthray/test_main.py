"""`python -m lthray`: one trial without Ray."""

from lthray import results
from lthray.__main__ import main

SMALL = ["--preset", "smoke", "--set", "prune.levels=1", "--set", "train.epochs=1", "--set", "data.probe_size=8",
         "--set", "explain.faithfulness=confidence_drop", "--set", "concepts.proj_steps=10"]


def test_runs_a_trial_and_a_rerun_does_nothing(tmp_path, capsys):
    assert main([*SMALL, "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[2] for ln in out] == ["0", "1"]
    assert results.read(tmp_path / "results").num_rows == 2
    assert main([*SMALL, "--workdir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == ""  # finished: no level printed, none trained again
    assert results.read(tmp_path / "results").num_rows == 2


def test_bad_values_exit_2_with_one_line(tmp_path, capsys):
    assert main(["--set", "prune.rate=2", "--workdir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "prune.rate=2" in err[0] and "(0, 1)" in err[0]
    assert main(["--set", "noequals", "--workdir", str(tmp_path)]) == 2
    assert not (tmp_path / "results").exists()


def test_a_missing_vocabulary_file_exits_2_before_anything_runs(tmp_path, capsys):
    assert main(["--preset", "smoke", "--set", f"concepts.vocabulary={tmp_path}/nope.txt", "--workdir",
                 str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "concepts.vocabulary=" in err[0] and "one per line" in err[0]
    assert not (tmp_path / "results").exists()
