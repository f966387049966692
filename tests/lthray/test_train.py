import math

import pytest
import torch

from lthray import masks
from lthray.config import TrainConfig
from lthray.explain.concepts import features
from lthray.models import build
from lthray.train import Diverged, evaluate, evaluate_with_features, lr_at, train


def test_masked_weights_stay_exactly_zero_through_training(digits):
    model = build("convnet", 10, 0)
    mask = masks.prune({k: torch.rand(w.shape) for k, w in masks.prunable(model).items()},
                       masks.ones(model), 0.8)
    seen = []

    def check(step):
        seen.append(step)
        for k, w in masks.prunable(model).items():
            assert (w[~mask[k]] == 0).all(), f"{k} revived at step {step}"

    train(model, digits, TrainConfig(epochs=1, weight_decay=5e-4), mask=mask, start=0, end=11, seed=0, on_step=check)
    check(11)
    assert seen == list(range(12))
    # and the surviving weights did train
    assert any((w[mask[k]] != 0).any() for k, w in masks.prunable(model).items())


def test_training_is_a_pure_function_of_seed_and_steps(digits):
    """Training [0, 11) in one go equals [0, 5) then [5, 11) on the same batches: the basis of rewinding."""
    cfg = TrainConfig(epochs=1, momentum=0.0)  # momentum is not carried across calls, so compare without it
    a = build("convnet", 10, 0)
    train(a, digits, cfg, mask=None, start=0, end=11, seed=0)
    b = build("convnet", 10, 0)
    train(b, digits, cfg, mask=None, start=0, end=5, seed=0)
    train(b, digits, cfg, mask=None, start=5, end=11, seed=0)
    for (ka, va), (_, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), ka


def test_lr_schedule_warms_up_then_decays_to_final():
    cfg = TrainConfig(lr=0.1, warmup=0.1, final_lr=0.01)
    lrs = [lr_at(s, 100, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert all(x >= y for x, y in zip(lrs[10:], lrs[11:], strict=False))
    assert lrs[-1] == pytest.approx(0.001, rel=0.05)


def test_divergence_is_detected(digits):
    model = build("convnet", 10, 0)
    with pytest.raises(Diverged):
        train(model, digits, TrainConfig(epochs=3, lr=10.0, warmup=0.0, weight_decay=0.5), mask=None, start=0,
              end=33, seed=0)


def test_evaluate_restores_training_mode(digits):
    model = build("convnet", 10, 0).train()
    acc, loss = evaluate(model, digits.test_x, digits.test_y)
    assert model.training and 0 <= acc <= 1 and loss > 0


@pytest.mark.parametrize("name", ["convnet", "resnet20"])
def test_one_test_pass_gives_evaluates_scores_and_the_concept_features_exactly(digits, name):
    """measure reads test accuracy and the PCBM's test features from one pass: both must be exactly
    what the two separate passes gave, or the shared pass would change the rows."""
    model = build(name, 10, 0)
    train(model, digits, TrainConfig(epochs=1, batch_size=64), mask=None, start=0, end=5, seed=0)
    model.train()
    x, y = digits.test_x[:300], digits.test_y[:300]  # two batches of 256, the second partial
    acc, loss, feats = evaluate_with_features(model, x, y)
    assert (acc, loss) == evaluate(model, x, y)
    assert torch.equal(feats, features(model, x))
    assert model.training  # mode restored


def test_distillation_loss_equals_the_hand_computed_tempered_kl():
    """weight * T^2 * KL(softmax(teacher / T) || softmax(student / T)), batch mean, teacher rows by index."""
    from lthray.train import Distill

    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    out = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0]], dtype=torch.float64)
    idx = torch.tensor([2, 0])  # batch images 0 and 1 are training images 2 and 0
    w, t = 0.7, 2.0
    hand = 0.0
    for b, i in enumerate(idx.tolist()):
        p = [math.exp(v / t) for v in teacher[i].tolist()]
        q = [math.exp(v / t) for v in out[b].tolist()]
        p, q = [v / sum(p) for v in p], [v / sum(q) for v in q]
        hand += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    hand = w * t * t * hand / len(idx)
    assert float(Distill(teacher, w, t).loss(out, idx)) == pytest.approx(hand, rel=1e-6)
    assert float(Distill(teacher, w, t).loss(teacher[idx], idx)) == pytest.approx(0.0, abs=1e-7)
