"""Content-addressed sharing of finished levels (lthray.trial.cache): computed once, reused bit for bit, the
reinit control on IMP's lineage, corrupt entries recomputed, a killed computation never reused."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from lthray.config import replace, run_id
from lthray.trial import cache as share
from lthray.trial import run_trial

SKIP = {"run_id", "trial_id", "method", "guidance_weight", "shared_from", "train_seconds", "explain_seconds",
        "git_sha", "config_json", "created_at", "schema_version"}


def _same(a, b):
    """Two rows' measured columns equal (floats to 1e-9, lists element-wise)."""
    for k, v in a.items():
        if k in SKIP or k.endswith("_seconds"):  # wall times: a reused level's are this trial's own (0)
            continue
        w = b[k]
        if isinstance(v, float) and isinstance(w, float):
            assert (math.isnan(v) and math.isnan(w)) or v == pytest.approx(w, rel=1e-9, abs=1e-12), k
        elif isinstance(v, list) and v and isinstance(v[0], float):
            assert v == pytest.approx(w, rel=1e-6, abs=1e-9), k
        else:
            assert v == w, k


def _cfgs(tiny_cfg):
    return [replace(tiny_cfg, **{"prune.method": m, "prune.guidance_weight": g})
            for m, g in (("imp", 0.0), ("random", 0.0), ("cam_guided", 0.5))]


def test_level_0_is_trained_once_per_seed_and_shared_rows_equal_unshared_ones(tiny_cfg, tmp_path):
    cfgs = _cfgs(tiny_cfg)
    shared = [run_trial(c, tmp_path / "w" / run_id(c), tmp_path / "r", shared=tmp_path / "store") for c in cfgs]
    alone = [run_trial(c, tmp_path / "w2" / run_id(c), tmp_path / "r2") for c in cfgs]
    dense = [rows[0] for rows in shared]
    assert dense[0]["shared_from"] is None and dense[0]["train_seconds"] > 0
    assert [d["shared_from"] for d in dense[1:]] == [run_id(cfgs[0])] * 2  # trained once, reused twice
    assert all(d["train_seconds"] == 0.0 and d["explain_seconds"] == 0.0 and d["cam_seconds"] == 0.0
               for d in dense[1:])  # own work only
    assert dense[0]["cam_seconds"] > 0 and dense[0]["pcbm_seconds"] > 0 and dense[0]["faithfulness_seconds"] > 0
    assert all(r["shared_from"] is None for rows in shared for r in rows[1:])  # different lineages
    for s_rows, a_rows in zip(shared, alone, strict=True):
        assert len(s_rows) == len(a_rows) == 3 and all(r["shared_from"] is None for r in a_rows)
        for a, b in zip(s_rows, a_rows, strict=True):
            _same(a, b)
    # another seed's dense model is its own
    other = replace(cfgs[1], seed=1)
    assert run_trial(other, tmp_path / "w" / run_id(other), tmp_path / "r", shared=tmp_path / "store")[0][
        "shared_from"] is None


def test_every_measured_part_survives_the_store_so_an_arm_reuses_imps_level_0(tiny_cfg, tmp_path, capsys):
    """Occlusion maps included (an entry's numpy arrays are stored as tensors: the weights-only reader refuses
    arrays, and every reader would recompute the level); the distillation arm then reads IMP's dense level."""
    base = replace(tiny_cfg, **{"explain.occlusion": True, "concepts.enabled": False, "explain.lrp": False})
    imp, kd = base, replace(base, **{"prune.method": "imp_kd", "prune.kd_weight": 1.0})
    first = run_trial(imp, tmp_path / "w" / run_id(imp), tmp_path / "r", shared=tmp_path / "store")
    rows = run_trial(kd, tmp_path / "w" / run_id(kd), tmp_path / "r", shared=tmp_path / "store")
    assert "unreadable" not in capsys.readouterr().out
    assert rows[0]["shared_from"] == run_id(imp) and rows[0]["train_seconds"] == 0.0
    assert rows[0]["occlusion_spearman"] == first[0]["occlusion_spearman"] == 1.0
    assert rows[1]["occlusion_spearman"] is not None and rows[1]["occlusion_spearman"] < 1


def test_reinit_follows_imps_lineage_from_the_store(tiny_cfg, tmp_path):
    imp = replace(tiny_cfg, **{"prune.method": "imp"})
    reinit = replace(tiny_cfg, **{"prune.method": "reinit"})
    run_trial(imp, tmp_path / "w" / run_id(imp), tmp_path / "r", shared=tmp_path / "store")
    rows = run_trial(reinit, tmp_path / "w" / run_id(reinit), tmp_path / "r", shared=tmp_path / "store")
    alone = run_trial(reinit, tmp_path / "w2", tmp_path / "r2")
    assert [r["shared_from"] for r in rows] == [run_id(imp)] * 3  # IMP's dense level and masks, reused
    for a, b in zip(rows, alone, strict=True):
        _same(a, b)  # but measured on its own freshly initialised copies: the same rows as unshared


def test_a_corrupt_entry_is_detected_and_recomputed(tiny_cfg, tmp_path, capsys):
    a, b = _cfgs(tiny_cfg)[:2]
    run_trial(a, tmp_path / "w" / run_id(a), tmp_path / "r", shared=tmp_path / "store")
    entries = sorted((tmp_path / "store").glob("lineage-*.pt"))
    key = share.lineage_key(b, 0)
    target = tmp_path / "store" / f"lineage-{key}.pt"
    assert target in entries
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the weights
    target.write_bytes(bytes(data))
    rows = run_trial(b, tmp_path / "w" / run_id(b), tmp_path / "r", shared=tmp_path / "store")
    assert "is corrupt (checksum)" in capsys.readouterr().out
    assert rows[0]["shared_from"] is None and rows[0]["train_seconds"] > 0  # recomputed, not reused
    assert list((tmp_path / "store").glob(".lineage-*.corrupt"))  # set aside, there to look at
    alone = run_trial(b, tmp_path / "w2", tmp_path / "r2")
    _same(rows[0], alone[0])


def test_a_killed_computation_leaves_nothing_to_reuse_and_its_lock_is_released(tiny_cfg, tmp_path):
    """kill -9 a trial while it trains a shared level 0 under the entry's lock: the next trial takes the
    lock at once, finds no entry (no half-written one), computes it, and every row exists once."""
    cfg = replace(tiny_cfg, **{"train.epochs": 30})  # long enough to be killed mid-training
    script = textwrap.dedent(f"""
        import sys
        from lthray.config import from_json
        from lthray.trial import run_trial
        cfg = from_json(sys.stdin.read())
        run_trial(cfg, {str(tmp_path / 'w1')!r}, {str(tmp_path / 'r')!r}, shared={str(tmp_path / 'store')!r})
    """)
    from lthray.config import to_json

    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    proc.stdin.write(to_json(cfg))
    proc.stdin.close()
    lock = tmp_path / "store" / f".lineage-{share.lineage_key(cfg, 0)}.pt.lock"
    deadline = time.time() + 120
    while not lock.exists() and time.time() < deadline:  # it holds the level-0 lock and trains
        time.sleep(0.2)
    time.sleep(2.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list((tmp_path / "store").glob("lineage-*.pt"))  # nothing published, nothing half-written
    other = replace(cfg, **{"prune.method": "random"})
    t0 = time.time()
    rows = run_trial(replace(other, **{"train.epochs": 1}), tmp_path / "w2", tmp_path / "r",
                     shared=tmp_path / "store")
    assert time.time() - t0 < 120  # the dead holder's lock did not block
    assert rows[0]["shared_from"] is None and [r["level"] for r in rows] == [0, 1, 2]
    from lthray import results

    t = results.read(tmp_path / "r").to_pandas()
    assert not t.duplicated(["run_id", "level"]).any()
