import math

import pytest
import torch

from lthray.explain import function


def _log(p):
    return torch.tensor(p, dtype=torch.float64).log()


def test_agreement_and_kl_equal_a_hand_computation():
    dense = [[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]]
    pruned = [[0.5, 0.4, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]
    # same top-1 on rows 0 and 2, not on row 1
    assert function.agreement(_log(pruned), _log(dense)) == pytest.approx(2 / 3)
    pairs = [(p, q) for rp, rq in zip(dense, pruned, strict=True) for p, q in zip(rp, rq, strict=True)]
    by_hand = sum(p * math.log(p / q) for p, q in pairs)
    assert function.kl_from(_log(dense), _log(pruned)) == pytest.approx(by_hand / 3)
    # KL is not symmetric: the dense model is the reference
    assert function.kl_from(_log(pruned), _log(dense)) != pytest.approx(by_hand / 3)


def test_a_network_against_itself_agrees_fully_and_diverges_by_nothing():
    lp = torch.randn(50, 10, generator=torch.Generator().manual_seed(0)).log_softmax(1)
    assert function.columns(lp, lp) == {"pred_agreement": 1.0, "pred_kl": pytest.approx(0.0, abs=1e-12)}


def test_kl_is_finite_where_the_pruned_model_gives_a_float32_zero_to_the_dense_class():
    ref = torch.tensor([[0.0, -1.0]]).log_softmax(1)
    other = torch.tensor([[-200.0, 0.0]]).log_softmax(1)  # exp(-200) is 0 in float32, not in log space
    assert other.exp()[0, 0] == 0
    p = ref.double().exp()[0]
    by_hand = float((p * (ref.double()[0] - other.double()[0])).sum())
    assert function.kl_from(ref, other) == pytest.approx(by_hand) and math.isfinite(by_hand)


def test_without_a_reference_the_columns_are_null_and_shapes_must_match():
    lp = torch.zeros(4, 3)
    assert function.columns(lp, None) == {"pred_agreement": None, "pred_kl": None}
    with pytest.raises(ValueError, match="one test set"):
        function.agreement(lp, torch.zeros(5, 3))


def test_same_prediction_compares_the_arg_max_at_the_given_test_rows():
    a = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]).log_softmax(1)
    b = torch.tensor([[0.0, 2.0], [0.0, 1.0], [3.0, 0.0]]).log_softmax(1)
    assert function.same_prediction(a, b, torch.tensor([0, 2, 1])).tolist() == [True, False, False]
