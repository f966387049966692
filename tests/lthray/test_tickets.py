"""Tickets out: the network a row describes, kept beside it, loaded back and exported for plain readers."""

import dataclasses

import numpy as np
import pytest
import torch

from lthray import mask_files, tickets
from lthray.train import evaluate
from lthray.trial import run_trial


@pytest.fixture(scope="module")
def trial(tmp_path_factory, digits):
    from lthray.config import ConceptConfig, DataConfig, ExplainConfig, PruneConfig, TrainConfig, TrialConfig

    cfg = TrialConfig(data=DataConfig(probe_size=8), train=TrainConfig(epochs=1, batch_size=128),
                      prune=PruneConfig(levels=2, rate=0.5, rewind="weight", rewind_step="3it"),
                      explain=ExplainConfig(faithfulness="confidence_drop", guide_size=32, fid_batch=8,
                                            same_init_floor=False),
                      concepts=ConceptConfig(enabled=False))
    d = tmp_path_factory.mktemp("tickets")
    rows = run_trial(cfg, d / "w", d / "r")
    return cfg, rows, d / "r"


def test_a_loaded_ticket_gives_its_rows_accuracy_back_with_exact_zeros(trial, digits):
    _, rows, results = trial
    for row in rows:
        model = tickets.load(results, row["run_id"], row["level"])
        assert not model.training
        acc, _ = evaluate(model, digits.test_x, digits.test_y)
        assert acc == pytest.approx(row["test_acc"], abs=1.5 / len(digits.test_y))  # at most a borderline image
        mask = mask_files.read(results)[(row["run_id"], row["level"])]
        for name, w in model.state_dict().items():
            if name in mask:
                assert torch.all(w[~torch.from_numpy(mask[name])] == 0)
    rewound = tickets.load(results, rows[2]["run_id"], 2, weights="rewound")
    trained = tickets.load(results, rows[2]["run_id"], 2)
    assert not torch.equal(rewound.fc.weight, trained.fc.weight)


def test_an_exported_ticket_reads_back_with_plain_safetensors_and_torch_load(trial, digits, tmp_path):
    from safetensors.torch import load_file

    from lthray.models import build

    cfg, rows, results = trial
    row = rows[2]
    written = tickets.export(results, row["run_id"], 2, "safetensors", tmp_path / "st")
    assert {p.name for p in written} == {"model.safetensors", "mask.safetensors", "config.json"}
    state = load_file(tmp_path / "st" / "model.safetensors")
    model = build(cfg.model.name, 10, 0, digits.spec.channels)  # built without lthray.tickets
    model.load_state_dict(state)
    acc, _ = evaluate(model.eval(), digits.test_x, digits.test_y)
    assert acc == pytest.approx(row["test_acc"], abs=1.5 / len(digits.test_y))
    exported = load_file(tmp_path / "st" / "mask.safetensors")
    stored = mask_files.read(results)[(row["run_id"], 2)]
    assert set(exported) == set(stored)
    assert all(np.array_equal(exported[k].numpy(), stored[k]) for k in stored)  # bit for bit
    tickets.export(results, row["run_id"], 2, "pt", tmp_path / "pt")
    again = torch.load(tmp_path / "pt" / "model.pt", weights_only=True)
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_onnx_exports_or_says_what_is_missing(trial, tmp_path):
    _, rows, results = trial
    try:
        written = tickets.export(results, rows[1]["run_id"], 1, "onnx", tmp_path)
    except tickets.TicketError as e:
        assert "pip install onnx" in str(e)
    else:
        assert (tmp_path / "model.onnx").stat().st_size > 1000 and written[0].name == "model.onnx"


def test_a_control_keeps_no_weights_and_says_so(trial, tmp_path):
    cfg, _, _ = trial
    ctl = dataclasses.replace(cfg, prune=dataclasses.replace(cfg.prune, method="shuffled", levels=1))
    rows = run_trial(ctl, tmp_path / "w", tmp_path / "r")
    with pytest.raises(tickets.TicketError, match="shuffled control"):
        tickets.load(tmp_path / "r", rows[1]["run_id"], 1)


@pytest.mark.parametrize("flags, words", [
    (["--run", "run_nope", "--level", "1"], "no row for run run_nope level 1"),
    (["--level", "1", "--format", "tflite"], "--format='tflite' is not one of"),
    (["--level", "x"], "invalid int value"),
])
def test_export_refuses_bad_input_in_one_line(trial, tmp_path, capsys, flags, words):
    _, rows, results = trial
    argv = ["--results", str(results), "--run", rows[1]["run_id"], "--out", str(tmp_path / "o"), *flags]
    try:
        rc = tickets.main(argv)
    except SystemExit as e:
        rc = e.code
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not (tmp_path / "o").exists()
