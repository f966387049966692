"""train.compile: one compilation per model shape per process, and the same batches and weights as eager."""

import pytest
import torch
from torch._dynamo.utils import counters

from lthray import data as data_mod
from lthray.config import TrainConfig, replace
from lthray.models import build
from lthray.train import _augment_rng, train
from lthray.trial import run_trial


def graphs() -> int:
    """Graphs dynamo has compiled in this process (a recompilation adds one)."""
    return counters["stats"]["unique_graphs"]


@pytest.fixture
def fresh_dynamo():
    torch._dynamo.reset()  # forget graphs other tests compiled, so that counts start at zero
    yield
    torch._dynamo.reset()


def test_one_compilation_per_model_shape_across_levels_and_trials(tiny_cfg, tmp_path, fresh_dynamo):
    cfg = replace(tiny_cfg, **{"train.compile": True})
    n0 = graphs()
    rows = run_trial(cfg, tmp_path / "a", tmp_path / "ra")
    assert len(rows) == 3 and graphs() - n0 == 1  # three levels trained, one graph
    run_trial(replace(cfg, seed=1), tmp_path / "b", tmp_path / "rb")  # another trial, a new model object
    assert graphs() - n0 == 1
    run_trial(replace(cfg, **{"train.batch_size": 64}), tmp_path / "c", tmp_path / "rc")  # a new shape
    assert graphs() - n0 == 2


def test_compiled_training_resumed_mid_level_equals_one_uninterrupted_run(digits, fresh_dynamo):
    """Steps [0, 11) in one call equal [0, 5) then [5, 11) under compile, bit for bit: the basis of
    rewinding and of resuming (that compiled values stay near eager ones is the golden test's job)."""
    cfg = TrainConfig(epochs=1, momentum=0.0, compile=True)  # momentum is not carried across calls
    a, b = build("convnet", 10, 0), build("convnet", 10, 0)
    train(a, digits, cfg, mask=None, start=0, end=11, seed=0)
    train(b, digits, cfg, mask=None, start=0, end=5, seed=0)
    train(b, digits, cfg, mask=None, start=5, end=11, seed=0)
    for k, va in a.state_dict().items():
        assert torch.equal(va, b.state_dict()[k]), k


def test_augmentation_drawn_on_the_datas_device_replays_the_cpu_stream(digits):
    """The generator now lives on the data's device; on CPU it is the same mt19937 stream, seeded the same
    way, as the host generator before the change: the very same batches, bit for bit."""
    order = data_mod.epoch_order(len(digits.train_x), 0, 0)
    for step in (0, 7):
        before = torch.Generator().manual_seed(data_mod.step_seed(0, data_mod.Salt.AUGMENT, step))
        old = data_mod.batch_at(digits, order, step, 32, before)
        new = data_mod.batch_at(digits, order, step, 32, _augment_rng(0, step, digits.train_x.device))
        assert torch.equal(old[0], new[0]) and torch.equal(old[1], new[1])


def test_compile_takes_a_mode_or_a_boolean():
    from lthray.config import ConfigError, from_flat, run_id

    assert from_flat({"train.compile": True}).train.compile == "default"
    assert run_id(from_flat({"train.compile": False})) == run_id(from_flat({}))  # off: old run ids hold
    assert from_flat({"train.compile": "reduce-overhead"}).train.compile == "reduce-overhead"
    with pytest.raises(ConfigError, match="train.compile='yes' is not allowed; expected true, false or one of"):
        from_flat({"train.compile": "yes"})


_TRAIN_ONE = """
import sys, torch
from lthray import data as data_mod
from lthray.config import TrainConfig
from lthray.models import build
from lthray.train import train
torch.set_num_threads(1)
m = build("convnet", 10, 0)
r = train(m, data_mod.load("digits", 8, "cpu"), TrainConfig(epochs=1, compile=True), mask=None, start=0, end=6, seed=0)
print(r.last_loss, float(sum(p.abs().sum() for p in m.parameters())))
"""


def test_a_process_under_another_simd_isa_does_not_load_the_others_compiled_kernels(tmp_path):
    """torch's inductor cache key leaves out the vector ISA; lthray keeps a cache folder per ISA. Without
    it, the second process (scalar code, ATEN_CPU_CAPABILITY=default) loads the first one's vectorised
    kernels and its weights come out non-finite or different."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[2]
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(root)}
    env.pop("ATEN_CPU_CAPABILITY", None)

    def run(**extra: str) -> tuple[float, float]:
        out = subprocess.run([sys.executable, "-c", _TRAIN_ONE], env={**env, **extra}, cwd=root, check=True,
                             capture_output=True, text=True).stdout.split()
        return float(out[-2]), float(out[-1])

    native = run()
    scalar = run(ATEN_CPU_CAPABILITY="default")
    assert native[0] == pytest.approx(scalar[0], rel=1e-3) and native[1] == pytest.approx(scalar[1], rel=1e-3)
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("isa-")]) == 2
