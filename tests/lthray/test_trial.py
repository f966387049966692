import shutil

import numpy as np
import pytest
import torch

from lthray import masks, results, schedule, trial
from lthray.config import TrainConfig, replace, run_id
from lthray.models import build
from lthray.train import train
from lthray.trial import TrialState, run_trial
from lthray.trial import measure as trial_measure
from lthray.trial import setup as trial_setup
from lthray.trial import steps as trial_steps


class Crash(Exception):
    pass


def crash_after_level_1(row):
    """An on_level callback that kills the trial right after level 1's row and checkpoint."""
    if row["level"] == 1:
        raise Crash


class Recorder:
    """Wraps trial.steps.train: records each call's start weights (state_dict) and arguments."""

    def __init__(self):
        self.calls = []

    def __call__(self, model, data, cfg, **kw):
        self.calls.append({"weights": {k: v.clone() for k, v in model.state_dict().items()}, **kw})
        return train(model, data, cfg, **kw)


def test_levels_prune_to_the_scheduled_density_and_write_one_row_each(tiny_cfg, tmp_path):
    rows = run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r")
    assert [r["level"] for r in rows] == [0, 1, 2]
    assert [r["density"] for r in rows] == pytest.approx([1.0, 0.5, 0.25], abs=1e-3)
    table = results.read(tmp_path / "r")
    assert sorted(table["level"].to_pylist()) == [0, 1, 2]
    assert set(table["run_id"].to_pylist()) == {run_id(tiny_cfg)}
    assert all(0 <= a <= 1 for a in table["test_acc"].to_pylist())
    by_level = {r["level"]: r for r in table.to_pylist()}
    assert by_level[0]["cam_spearman"] == pytest.approx(1.0)
    # the saved mask really has the density the row claims, and the saved weights honour it
    st = TrialState.load(tmp_path / "w" / trial.STATE)
    assert masks.density(st.mask) == pytest.approx(rows[-1]["density"])
    model = build("convnet", 10, 0)
    model.load_state_dict(st.weights)
    for k, w in masks.prunable(model).items():
        assert (w[~st.mask[k]] == 0).all()


def test_weight_rewinding_restores_the_saved_step_k_state_bit_for_bit(tiny_cfg, tmp_path, monkeypatch, digits):
    rec = Recorder()
    monkeypatch.setattr(trial_steps, "train", rec)
    run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r")
    st = TrialState.load(tmp_path / "w" / trial.STATE)
    k = schedule.rewind_steps(tiny_cfg)
    assert k == 3
    # the saved rewind point is what k steps of training produce
    ref = build("convnet", 10, tiny_cfg.seed)
    train(ref, digits, tiny_cfg.train, mask=None, start=0, end=k, seed=tiny_cfg.seed)
    for name, v in ref.state_dict().items():
        assert torch.equal(st.rewind[name], v), name
    # every pruned level starts from exactly those weights and BN buffers, and replays the schedule from k
    for call in rec.calls[1:]:
        assert call["start"] == k and call["end"] == schedule.total_steps(tiny_cfg) and call["constant_lr"] is None
        for name, v in call["weights"].items():
            assert torch.equal(v, st.rewind[name]), name


@pytest.mark.parametrize("mode", ["lr", "finetune"])
def test_lr_rewinding_and_finetuning_keep_the_trained_weights(tiny_cfg, tmp_path, monkeypatch, mode):
    cfg = replace(tiny_cfg, **{"prune.rewind": mode})
    rec = Recorder()
    monkeypatch.setattr(trial_steps, "train", rec)
    states = []
    run_trial(cfg, tmp_path / "w", tmp_path / "r",
              on_level=lambda row: states.append(TrialState.load(tmp_path / "w" / trial.STATE)))
    for level in (1, 2):
        call, prev = rec.calls[level], states[level - 1]
        for name, v in call["weights"].items():
            assert torch.equal(v, prev.weights[name]), name  # continues from the previous level's weights
        expect = cfg.train.lr * cfg.train.final_lr if mode == "finetune" else None
        assert call["constant_lr"] == expect and call["start"] == schedule.rewind_steps(cfg)


def test_a_finished_trial_is_never_trained_again(tiny_cfg, tmp_path, monkeypatch):
    first = run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r")
    files = {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    assert len(files) == 3 * 3  # a row, a mask file and the weights (lthray.tickets) per level

    def no_training(*a, **k):
        raise AssertionError("trained a finished level")

    monkeypatch.setattr(trial_steps, "train", no_training)
    again = run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r")
    assert again == first
    assert {p.relative_to(tmp_path): p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == files


def test_a_crashed_trial_continues_from_its_last_finished_level(tiny_cfg, tmp_path, monkeypatch):
    with pytest.raises(Crash):
        run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r", on_level=crash_after_level_1)
    rec = Recorder()
    monkeypatch.setattr(trial_steps, "train", rec)
    rows = run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r")
    assert len(rec.calls) == 1  # only level 2 was trained
    assert [r["level"] for r in rows] == [0, 1, 2]
    assert sorted(results.read(tmp_path / "r")["level"].to_pylist()) == [0, 1, 2]


def test_a_diverged_trial_is_marked_and_stops(tiny_cfg, tmp_path):
    cfg = replace(tiny_cfg, **{"train.lr": 10.0, "train.warmup": 0.0, "train.weight_decay": 0.5,
                               "train.epochs": 3})
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r")
    assert rows[-1]["status"] == "diverged" and rows[-1]["test_acc"] is None
    table = results.read(tmp_path / "r").to_pylist()
    assert [r["status"] for r in table] == [r["status"] for r in rows]
    assert len(rows) <= cfg.prune.levels + 1
    assert run_trial(cfg, tmp_path / "w", tmp_path / "r") == rows  # not retried on resume


def test_train_config_is_respected(tiny_cfg, tmp_path, monkeypatch):
    rec = Recorder()
    monkeypatch.setattr(trial_steps, "train", rec)
    cfg = replace(tiny_cfg, **{"train.epochs": 2})
    run_trial(cfg, tmp_path / "w", tmp_path / "r")
    assert rec.calls[0]["start"] == 0 and rec.calls[0]["end"] == 2 * (1437 // 128)
    assert isinstance(cfg.train, TrainConfig)


def test_rewind_modes_are_registered_functions(tiny_cfg):
    from lthray.rewind import REWINDS

    assert REWINDS.names() == ["finetune", "lr", "weight"]
    model, point = build("convnet", 10, 0), build("convnet", 10, 1).state_dict()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    k, total = schedule.rewind_steps(tiny_cfg), schedule.total_steps(tiny_cfg)
    s = REWINDS.get("lr")(model, point, tiny_cfg)
    assert (s.start, s.end, s.constant_lr) == (k, total, None)
    assert all(torch.equal(v, trained[n]) for n, v in model.state_dict().items())  # weights kept
    s = REWINDS.get("finetune")(model, point, tiny_cfg)
    assert s.constant_lr == pytest.approx(tiny_cfg.train.lr * tiny_cfg.train.final_lr)
    s = REWINDS.get("weight")(model, point, tiny_cfg)
    assert (s.start, s.end) == (k, total)
    assert all(torch.equal(v, point[n]) for n, v in model.state_dict().items())  # weights and BN buffers
    with pytest.raises(KeyError, match="finetune, lr, weight"):
        REWINDS.get("rewind-to-the-future")


def test_stages_run_one_at_a_time_and_return_what_they_computed(tiny_cfg):
    from lthray.schedule import Schedule

    t = trial_setup.setup(tiny_cfg, torch.device("cpu"), sweep="s", trial_id="")
    st = TrialState()
    assert t.identity["rewind_spec"] == "3it" and t.identity["rewind_step"] == 3
    tr = trial_steps.train_level(t, st, 0, masks.ones(t.model), Schedule(0, schedule.total_steps(tiny_cfg)))
    assert tr.steps == schedule.total_steps(tiny_cfg)
    m = trial_measure.measure(t, st, 0)
    assert m.cols["cam_spearman"] == pytest.approx(1.0) and m.maps is not None
    assert st == TrialState()  # stages never change the state: `advance` does
    st = TrialState(level=0, mask=masks.ones(t.model))
    mask = trial_steps.prune(t, st, 1)
    assert masks.density(mask) == pytest.approx(0.5, abs=1e-3)


def _state(tmp_path, name):
    return TrialState.load(tmp_path / name / trial.STATE)


def test_pruning_at_init_reaches_each_level_density_from_the_rewind_point(tiny_cfg, tmp_path):
    from lthray import mask_files
    from lthray.methods import CRITERIA, ScoreContext

    cfg = replace(tiny_cfg, **{"prune.method": "snip", "prune.rewind_step": "0it"})
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r")
    stored = mask_files.read(tmp_path / "r")
    total = masks.count(masks.ones(build("convnet", 10, 0)))[1]
    # independently: SNIP scores of the initialisation (seed 0), pruned in one shot to each density
    t = trial_setup.setup(cfg, torch.device("cpu"), sweep="s", trial_id="")
    ctx = ScoreContext(t.model, masks.ones(t.model), 0, 1, guide_x=t.guide_x, guide_y=t.guide_y)
    scores = CRITERIA.get("snip")(ctx)
    for r in rows[1:]:
        d = cfg.prune.density_at(r["level"])
        assert r["density"] == round(total * d) / total
        want = masks.prune(scores, ctx.mask, masks.fraction_to(ctx.mask, d))
        got = stored[(r["run_id"], r["level"])]
        assert all((got[k] == want[k].numpy()).all() for k in want)


def test_synflow_prunes_in_the_configured_number_of_rounds(tiny_cfg, tmp_path, monkeypatch):
    from lthray.methods import CRITERIA

    calls = []
    real = CRITERIA.get("synflow")
    monkeypatch.setitem(CRITERIA._items, "synflow", lambda ctx: calls.append(masks.density(ctx.mask)) or real(ctx))
    cfg = replace(tiny_cfg, **{"prune.method": "synflow", "prune.pai_iterations": 7, "prune.levels": 1})
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r")
    assert len(calls) == 7 and calls[0] == 1.0 and calls == sorted(calls, reverse=True)
    assert rows[1]["density"] == pytest.approx(0.5, abs=1e-4)


def test_reinit_keeps_the_tickets_masks_and_lineage_but_measures_a_fresh_initialisation(tiny_cfg, tmp_path):
    from lthray import mask_files

    imp = run_trial(tiny_cfg, tmp_path / "imp", tmp_path / "r")
    cfg = replace(tiny_cfg, **{"prune.method": "reinit"})
    re = run_trial(cfg, tmp_path / "re", tmp_path / "r")
    stored = mask_files.read(tmp_path / "r")
    for a, b in zip(imp, re, strict=True):
        ma, mb = stored[(a["run_id"], a["level"])], stored[(b["run_id"], b["level"])]
        assert all((ma[k] == mb[k]).all() for k in ma)  # the very same ticket masks
        same = a["test_loss"] == b["test_loss"] and a["probe_cams"] == b["probe_cams"]
        assert same == (a["level"] == 0)  # level 0 is the same dense network; later levels are not
    wa, wb = _state(tmp_path, "imp").weights, _state(tmp_path, "re").weights
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the lineage the next level prunes is IMP's


def test_reinit_and_pruning_at_init_refuse_other_rewind_modes():
    from lthray.config import ConfigError, PruneConfig, TrialConfig
    from lthray.validate import check

    for method in ("reinit", "snip", "grasp", "synflow"):
        with pytest.raises(ConfigError, match="'weight' with prune.method"):
            check(TrialConfig(prune=PruneConfig(method=method, rewind="lr")))


def test_instability_trains_a_second_copy_from_the_rewind_point_and_records_the_barrier(tiny_cfg, tmp_path,
                                                                                         monkeypatch):
    plain = run_trial(tiny_cfg, tmp_path / "plain", tmp_path / "r0")
    rec = Recorder()
    monkeypatch.setattr(trial_steps, "train", rec)
    cfg = replace(tiny_cfg, **{"instability.enabled": True, "instability.points": 11, "instability.bn_batches": 2})
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r")
    k, total = schedule.rewind_steps(cfg), schedule.total_steps(cfg)
    # two copies per level; level 0 trains from 0 and its second copy from the rewind point k
    assert [(c["start"], c["end"]) for c in rec.calls] == [(0, total)] + [(k, total)] * 5
    assert len({c["seed"] for c in rec.calls}) == 4  # the trial's data order, and one other per level
    rewind = _state(tmp_path, "w").rewind
    assert all(torch.equal(rec.calls[1]["weights"][n], rewind[n]) for n in rewind)  # copy 2 starts at step k
    for r in rows:
        assert len(r["instability_errors"]) == 11 and 0 <= min(r["instability_errors"])
        errs = r["instability_errors"]
        assert r["instability_barrier"] == pytest.approx(max(errs) - (errs[0] + errs[-1]) / 2)
    assert all(r["instability_barrier"] is None for r in plain)
    # the second copy never disturbs the ticket: the same lineage and the same metrics as without it
    wa, wb = _state(tmp_path, "plain").weights, _state(tmp_path, "w").weights
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in plain]


@pytest.mark.parametrize("extra", [{"prune.method": "reinit"}, {"prune.method": "synflow", "prune.pai_iterations": 5},
                                   {"instability.enabled": True, "instability.bn_batches": 2}])
def test_new_methods_resume_after_a_crash_to_the_uninterrupted_result(tiny_cfg, tmp_path, extra):
    from lthray import mask_files

    cfg = replace(tiny_cfg, **extra)
    whole = run_trial(cfg, tmp_path / "a", tmp_path / "ra")
    with pytest.raises(Crash):
        run_trial(cfg, tmp_path / "b", tmp_path / "rb", on_level=crash_after_level_1)
    resumed = run_trial(cfg, tmp_path / "b", tmp_path / "rb")
    keys = ("level", "density", "test_acc", "test_loss", "cam_spearman", "instability_barrier")
    assert [[r[k] for k in keys] for r in resumed] == [[r[k] for k in keys] for r in whole]
    ma, mb = mask_files.read(tmp_path / "ra"), mask_files.read(tmp_path / "rb")
    assert ma.keys() == mb.keys() and all((ma[k][n] == mb[k][n]).all() for k in ma for n in ma[k])


def test_level_0_records_the_noise_floors_inputs_and_every_level_its_empty_layers(tiny_cfg, tmp_path):
    rows = run_trial(tiny_cfg, tmp_path / "w", tmp_path / "r")
    dense, pruned = rows[0], rows[1:]
    n = tiny_cfg.data.probe_size
    cams = np.asarray(dense["reference_cams"], dtype=np.float32)
    assert cams.size % n == 0 and cams.size > 0
    # the gallery's maps are the first probe images' reference maps
    np.testing.assert_array_equal(cams[: len(dense["probe_cams"])], np.asarray(dense["probe_cams"], np.float32))
    assert len(dense["reference_lrp"]) == cams.size
    assert 0 <= dense["concept_refit_overlap"] <= 1 and -1 <= dense["concept_refit_spearman"] <= 1
    assert dense["concept_refit_overlap"] < 1 or dense["concept_refit_spearman"] < 1  # a refit is not a copy
    for r in pruned:
        assert r["reference_cams"] is None and r["reference_lrp"] is None and r["concept_refit_overlap"] is None
    assert all(r["empty_layers"] == [] for r in rows)


def test_empty_layers_names_the_layers_a_mask_keeps_nothing_of():
    mask = {"a": torch.tensor([True, False]), "b": torch.zeros(3, dtype=torch.bool), "c": torch.ones(2, dtype=bool)}
    assert masks.empty_layers(mask) == ["b"]


def test_function_change_is_against_the_same_seeds_dense_predictions(tiny_cfg, tmp_path, digits):
    """Level 0 agrees with itself; a pruned level's agreement and KL equal a hand computation from the
    dense weights (level 0's checkpoint, copied as it is written) and the pruned level's own weights."""

    def keep_level_0(row):
        if row["level"] == 0:
            shutil.copy(tmp_path / "w" / trial.STATE, tmp_path / "dense.pt")

    cfg = replace(tiny_cfg, **{"train.epochs": 6})  # long enough to leave chance, where predictions differ
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r", on_level=keep_level_0)
    assert rows[0]["pred_agreement"] == 1.0 and rows[0]["pred_kl"] == pytest.approx(0.0, abs=1e-9)

    def log_probs(state_path):
        model = build("convnet", 10, 0)
        model.load_state_dict(TrialState.load(state_path).weights)
        with torch.no_grad():
            return model.eval()(digits.test_x).double().log_softmax(1)

    dense, pruned = log_probs(tmp_path / "dense.pt"), log_probs(tmp_path / "w" / trial.STATE)
    agree = float((dense.argmax(1) == pruned.argmax(1)).double().mean())
    kl = float((dense.exp() * (dense - pruned)).sum(1).mean())
    assert agree < 1 and kl > 0  # two levels at 50% moved the function: the test can tell
    assert rows[2]["pred_agreement"] == pytest.approx(agree, abs=2 / len(digits.test_x))
    assert rows[2]["pred_kl"] == pytest.approx(kl, rel=1e-3)


def test_shuffled_keeps_imps_per_layer_counts_at_new_positions_and_imps_lineage(tiny_cfg, tmp_path):
    from lthray import mask_files

    imp = run_trial(tiny_cfg, tmp_path / "imp", tmp_path / "r")
    sh = run_trial(replace(tiny_cfg, **{"prune.method": "shuffled"}), tmp_path / "sh", tmp_path / "r")
    stored = mask_files.read(tmp_path / "r")
    for a, b in zip(imp[1:], sh[1:], strict=True):
        ma, mb = stored[(a["run_id"], a["level"])], stored[(b["run_id"], b["level"])]
        assert {k: int(m.sum()) for k, m in ma.items()} == {k: int(m.sum()) for k, m in mb.items()}
        moved = sum(int((ma[k] & ~mb[k]).sum()) for k in ma) / sum(int(m.sum()) for m in ma.values())
        assert moved > 0.2  # positions redrawn (at 50% density a random draw moves about half)
        assert a["density"] == b["density"] and a["test_loss"] != b["test_loss"]
    assert imp[0]["test_loss"] == sh[0]["test_loss"]  # the same dense network
    wa, wb = _state(tmp_path, "imp").weights, _state(tmp_path, "sh").weights
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the lineage the next level prunes is IMP's


def test_shuffle_within_layers_is_seeded_and_keeps_every_layers_count():
    mask = {"a": torch.rand(40, 3, generator=torch.Generator().manual_seed(1)) > 0.7, "b": torch.ones(5, dtype=bool)}
    s1, s2, s3 = (masks.shuffle_within_layers(mask, s) for s in (0, 0, 1))
    assert all(torch.equal(s1[k], s2[k]) for k in mask) and not torch.equal(s1["a"], s3["a"])
    assert {k: int(m.sum()) for k, m in s1.items()} == {k: int(m.sum()) for k, m in mask.items()}
    assert torch.equal(s1["b"], mask["b"]) and not torch.equal(s1["a"], mask["a"])


def test_level_0_measures_a_same_initialisation_copy_once_for_the_floor_and_the_instability_path(
        tiny_cfg, tmp_path, monkeypatch):
    """The floor's copy starts at the rewind point with another data order and is measured against the
    dense model as a pruned level is; with the instability analysis on, both read one copy."""
    calls = []
    real = trial_steps.train_level
    monkeypatch.setattr(trial_steps, "train_level",
                        lambda *a, **kw: calls.append((a[2], kw.get("data_seed"))) or real(*a, **kw))
    cfg = replace(tiny_cfg, **{"explain.same_init_floor": True, "instability.enabled": True, "train.epochs": 4,
                               "prune.levels": 1})
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r")
    level0 = [c for c in calls if c[0] == 0]
    assert len(level0) == 2 and level0[0][1] is None and level0[1][1] is not None  # lineage, then one copy
    dense, pruned = rows
    for c in ("cam_spearman", "cam_iou", "lrp_spearman", "pred_agreement", "concept_topk_overlap"):
        v = dense[f"floor_{c}"]
        assert v is not None and v < 1, c  # another data order moves maps, predictions and concepts
        assert pruned[f"floor_{c}"] is None
    assert dense["floor_pred_kl"] > 0 and 0 < dense["floor_test_acc"] <= 1
    assert dense["cam_spearman_same_pred"] == 1.0 and -1 <= pruned["cam_spearman_same_pred"] <= 1
    assert -1 <= dense["floor_cam_spearman_same_pred"] < 1 and dense["floor_lrp_spearman_same_pred"] is not None
    assert dense["instability_barrier"] is not None
    off = run_trial(replace(cfg, **{"explain.same_init_floor": False}), tmp_path / "w2", tmp_path / "r2")
    assert off[0]["floor_cam_spearman"] is None
    # the floor's copy never changes the measured network: the same rows either way
    assert [r["test_loss"] for r in off] == [r["test_loss"] for r in rows]


def test_retraining_arms_share_imps_masks_and_lineage_and_differ_only_in_the_loss(tiny_cfg, tmp_path, monkeypatch):
    """Issue 34's design: at every level imp_fid and imp_kd retrain IMP's own mask from the level's start,
    each with its one extra loss, while their lineage (what the next level prunes) stays IMP's."""
    from lthray import mask_files

    calls = Recorder()
    monkeypatch.setattr(trial_steps, "train", calls)
    base = replace(tiny_cfg, **{"explain.lrp": False, "concepts.enabled": False})
    imp = run_trial(base, tmp_path / "imp", tmp_path / "r")
    arms = {m: run_trial(replace(base, **{"prune.method": m, **kw}), tmp_path / m, tmp_path / "r")
            for m, kw in (("imp_fid", {"prune.lambda_fid": 1.0}), ("imp_kd", {"prune.kd_weight": 1.0}))}
    stored = mask_files.read(tmp_path / "r")
    for rows in arms.values():
        for a, b in zip(imp, rows, strict=True):
            ma, mb = stored[(a["run_id"], a["level"])], stored[(b["run_id"], b["level"])]
            assert all(np.array_equal(ma[k], mb[k]) for k in ma)  # the very same mask at every level
            assert (a["test_loss"] == b["test_loss"]) == (a["level"] == 0)  # retrained: only pruned levels differ
    assert arms["imp_kd"][1]["kd_weight"] == 1.0 and arms["imp_fid"][1]["lambda_fid"] == 1.0
    from lthray import tickets

    with pytest.raises(tickets.TicketError, match="imp_kd control or arm"):  # its row is not the lineage's network
        tickets.load(tmp_path / "r", arms["imp_kd"][1]["run_id"], 1)
    for m in arms:
        wa, wb = _state(tmp_path, "imp").weights, _state(tmp_path, m).weights
        assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the lineage the next level prunes is IMP's
    # each trial trains its lineage with cross-entropy alone; an arm's measured copy adds exactly its loss
    losses = [(c.get("extra_loss") is not None, c.get("distill") is not None) for c in calls.calls]
    assert losses.count((True, False)) == base.prune.levels  # imp_fid's copies: the fidelity term
    assert losses.count((False, True)) == base.prune.levels  # imp_kd's copies: distillation
    assert (True, True) not in losses


def test_retraining_arms_refuse_a_missing_or_a_foreign_loss(tiny_cfg):
    from lthray.config import ConfigError, to_flat
    from lthray.validate import checked_config

    flat = to_flat(tiny_cfg)
    for kw, key in (({"prune.method": "imp_fid"}, "prune.lambda_fid"), ({"prune.method": "imp_kd"}, "prune.kd_weight"),
                    ({"prune.kd_weight": 1.0}, "prune.kd_weight"),
                    ({"prune.method": "imp_kd", "prune.kd_weight": 1.0, "prune.lambda_fid": 1.0}, "prune.lambda_fid")):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            checked_config({**flat, **kw})
