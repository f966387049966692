"""Storage faults: a full disk (ENOSPC) or an I/O error (EIO) while a row, a mask file or a checkpoint is
written leaves no partial file visible and fails the trial with one clear error, and running the trial
again completes it with every row once; a truncated or altered checkpoint or mask file met on resume is
named, its level recomputed, and nothing else is lost."""

from __future__ import annotations

import pytest

from lthray import mask_files, results, storage
from lthray.config import run_id
from lthray.trial import PREVIOUS, STATE, TrialState, run_trial
from lthray.trial import state as trial_state
from lthray.trial import steps as trial_steps


def _visible(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))


@pytest.mark.parametrize("code", ["ENOSPC", "EIO"])
@pytest.mark.parametrize("what", ["row", "mask", "checkpoint"])
def test_a_failed_write_publishes_nothing_and_the_rerun_completes(tiny_cfg, tmp_path, monkeypatch, what, code):
    rid = run_id(tiny_cfg)
    res, work = tmp_path / "r", tmp_path / "w"
    target = {"row": f"r/{rid}__L001.parquet", "mask": f"_masks/{rid}__L001.parquet", "checkpoint": "w/state.pt"}
    seen = []

    def on_level(row):
        seen.append(row["level"])
        if row["level"] == 0:  # level 0 is written; the fault hits level 1's file
            monkeypatch.setenv("LTHRAY_FAULT_FSYNC", f"{code}:{target[what]}")

    with pytest.raises(storage.StorageError) as e:
        run_trial(tiny_cfg, work, res, on_level=on_level)
    msg = str(e.value)
    assert target[what].split("/")[-1] in msg and "could not write" in msg and code in msg and "\n" not in msg
    assert _hidden(tmp_path) == []  # no temp file left behind
    # what is visible is whole, and only what was published before the fault
    expect = {"row": ([0], [0, 1], 0), "mask": ([0], [0], 0), "checkpoint": ([0, 1], [0, 1], None)}[what]
    assert sorted(r["level"] for r in results.read(res).to_pylist()) == expect[0]
    assert sorted(lv for _, lv in mask_files.read(res)) == expect[1]
    if expect[2] is None:  # the checkpoint being replaced: the one before it is kept as PREVIOUS
        assert not (work / STATE).exists() and TrialState.load(work / PREVIOUS).level == 0
    else:
        assert TrialState.load(work / STATE).level == 0
    monkeypatch.delenv("LTHRAY_FAULT_FSYNC")
    again = run_trial(tiny_cfg, work, res)
    assert [r["level"] for r in again] == [0, 1, 2]
    counts = [(r["run_id"], r["level"]) for r in results.read(res).to_pylist()]
    assert len(counts) == len(set(counts)) == 3
    assert sorted(lv for _, lv in mask_files.read(res)) == [0, 1, 2]
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_corrupt_checkpoint_is_named_and_only_its_level_is_recomputed(tiny_cfg, tmp_path, monkeypatch, capsys,
                                                                      damage):
    res, work = tmp_path / "r", tmp_path / "w"
    run_trial(tiny_cfg, work, res)
    data = (work / STATE).read_bytes()
    (work / STATE).write_bytes(data[: len(data) // 2] if damage == "truncate"
                               else data[:-100] + bytes([data[-100] ^ 1]) + data[-99:])
    with pytest.raises(trial_state.CorruptState, match="state.pt"):
        TrialState.load(work / STATE)
    trained = []
    real = trial_steps.train
    monkeypatch.setattr(trial_steps, "train", lambda *a, **k: trained.append(1) or real(*a, **k))
    rows = run_trial(tiny_cfg, work, res)
    err = capsys.readouterr().err
    assert "state.pt" in err and f"continuing from {work / PREVIOUS} (level 1): level 2 is recomputed" in err
    assert len(trained) == 1  # one level's training, not the trial's
    assert [r["level"] for r in rows] == [0, 1, 2]
    keys = [(r["run_id"], r["level"]) for r in results.read(res).to_pylist()]
    assert len(keys) == len(set(keys)) == 3
    assert TrialState.load(work / STATE).level == 2


def test_a_corrupt_mask_file_is_named_set_aside_and_its_level_recomputed(tiny_cfg, tmp_path, capsys):
    res, work = tmp_path / "r", tmp_path / "w"
    run_trial(tiny_cfg, work, res)
    want = mask_files.read(res)
    path = tmp_path / "r" / "_masks" / f"{run_id(tiny_cfg)}__L002.parquet"
    path.write_bytes(path.read_bytes()[:50])
    rows = run_trial(tiny_cfg, work, res)
    err = capsys.readouterr().err
    assert f"mask file {path} is unreadable" in err and "recomputing from level 2" in err
    assert [r["level"] for r in rows] == [0, 1, 2]
    got = mask_files.read(res)  # rewritten, equal to the original (same machine, same seed)
    assert set(got) == set(want) and all((got[k][n] == want[k][n]).all() for k in want for n in want[k])
    assert any(p.name.endswith(".corrupt") for p in (tmp_path / "r" / "_masks").iterdir())  # kept to look at
    keys = [(r["run_id"], r["level"]) for r in results.read(res).to_pylist()]
    assert len(keys) == len(set(keys)) == 3


def test_a_corrupt_mask_of_the_only_finished_level_restarts_the_trial(tiny_cfg, tmp_path, capsys):
    res, work = tmp_path / "r", tmp_path / "w"

    def stop(row):
        if row["level"] == 0:
            raise KeyboardInterrupt  # a trial stopped after its first level: no previous checkpoint yet

    with pytest.raises(KeyboardInterrupt):
        run_trial(tiny_cfg, work, res, on_level=stop)
    assert not (work / PREVIOUS).exists()
    path = res / "_masks" / f"{run_id(tiny_cfg)}__L000.parquet"
    path.write_bytes(b"not parquet")
    rows = run_trial(tiny_cfg, work, res)
    assert "recomputing from level 0" in capsys.readouterr().err
    assert [r["level"] for r in rows] == [0, 1, 2] and sorted(lv for _, lv in mask_files.read(res)) == [0, 1, 2]
