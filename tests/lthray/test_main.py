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


def test_progress_inside_a_level_goes_to_stderr_and_quiet_silences_it(tmp_path, capsys):
    assert main([*SMALL, "--workdir", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip().startswith("training ")]
    assert lines and lines[-1].split()[1].split("/")[0] == lines[-1].split()[1].split("/")[1]  # reaches 100%
    assert "s left" in lines[0]
    assert main([*SMALL, "--workdir", str(tmp_path / "b"), "--quiet"]) == 0
    assert "training " not in capsys.readouterr().err


def test_log_hands_each_levels_metrics_to_a_tracker(tmp_path, capsys):
    import struct

    from tensorboardX.proto.event_pb2 import Event

    assert main([*SMALL, "--workdir", str(tmp_path), "--log", "tensorboard", "--quiet"]) == 0
    files = list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    assert len(files) == 1
    steps = {}
    raw = files[0].read_bytes()
    i = 0
    while i < len(raw):  # TFRecord framing: u64 length, u32 crc, the record, u32 crc
        (n,) = struct.unpack("<Q", raw[i : i + 8])
        event = Event.FromString(raw[i + 12 : i + 12 + n])
        i += 12 + n + 4
        for v in event.summary.value:
            steps.setdefault(v.tag, []).append(event.step)
    assert steps["test_acc"] == [0, 1] and "cam_spearman" in steps  # one point per level, the level as step


def test_log_with_a_tracker_that_is_not_installed_exits_2_first(tmp_path, capsys, monkeypatch):
    from lthray import tracking

    monkeypatch.setitem(tracking.TRACKERS, "tensorboard", ("no_such_module_xyz", "tensorboardX"))
    assert main([*SMALL, "--workdir", str(tmp_path), "--log", "tensorboard"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install tensorboardX" in err[0]
    assert not (tmp_path / "results").exists()


def test_data_of_another_size_than_the_schedule_counts_exits_2_with_one_line(synthetic_cifar, tmp_path, capsys):
    # the synthetic archive has 240 training images; the schedule counts CIFAR-10's 50,000
    args = ["--preset", "cifar10-preserve", "--set", "concepts.enabled=false", "--workdir", str(tmp_path / "w")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loaded 240 training images" in err[0] and "data.train_size=240" in err[0]
    assert not (tmp_path / "w").exists()
