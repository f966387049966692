"""SNIP, GraSP and SynFlow against scores computed by hand (numpy, no autograd) on tiny networks."""

import numpy as np
import pytest
import torch
from torch import nn

from lthray import masks
from lthray.methods import CRITERIA, GRASP_TEMPERATURE, METHODS, ScoreContext


def _linear(seed=0, n_in=3, n_out=4):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(n_in, n_out, bias=False)).double()


def _data(seed=1, n=5, n_in=3, n_out=4):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n_in, generator=g, dtype=torch.float64), torch.randint(0, n_out, (n,), generator=g)


def _ctx(model, x, y, mask=None):
    return ScoreContext(model, mask or masks.ones(model), 0, 1, guide_x=x, guide_y=y)


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _grad_ce(w, x, y, scale=1.0, mean=False):
    """d/dW of sum_i CE(W x_i / scale, y_i) for a bias-free linear layer, by hand."""
    p = _softmax(x @ w.T / scale)
    p[np.arange(len(y)), y] -= 1
    g = p.T @ x / scale
    return g / len(y) if mean else g


def test_snip_is_abs_weight_times_the_loss_gradient():
    model, (x, y) = _linear(), _data()
    w = model[0].weight.detach().numpy().copy()
    got = CRITERIA.get("snip")(_ctx(model, x, y))["0.weight"].numpy()
    np.testing.assert_allclose(got, np.abs(w * _grad_ce(w, x.numpy(), y.numpy())), rtol=1e-10)
    assert model[0].weight.grad is None  # scoring leaves no gradients behind


def _bn_net():
    """Linear -> BatchNorm -> Linear with running statistics far from the batch's: train and eval differ."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3, bias=False))
    model = model.double()
    model[1].running_mean.fill_(0.7)
    model[1].running_var.fill_(3.0)
    return model


def _abs_w_grad(model, x, y, train):
    """|w * dL/dw| with L the summed cross-entropy, the model in the given BN mode (autograd, a copy)."""
    import copy

    m = copy.deepcopy(model).train(train)
    torch.nn.functional.cross_entropy(m(x), y, reduction="sum").backward()
    return {k: (m.state_dict()[k] * p.grad).abs() for k, p in m.named_parameters() if k.endswith("0.weight")
            or k == "3.weight"}


def test_snip_scores_the_model_in_eval_mode_as_snip_public_does():
    model, (x, y) = _bn_net(), _data(n=8, n_out=3)
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    got = CRITERIA.get("snip")(_ctx(model, x, y))
    want, batch = _abs_w_grad(model, x, y, train=False), _abs_w_grad(model, x, y, train=True)
    for k in ("0.weight", "3.weight"):
        torch.testing.assert_close(got[k], want[k], rtol=1e-10, atol=1e-12)
        assert not torch.allclose(got[k], batch[k])  # the mode matters on this network
    for k, v in model.state_dict().items():  # running statistics and weights untouched
        torch.testing.assert_close(v, buffers[k])


def _grasp_ref(model, x, y, train):
    """w * (H g) of the first layer by autograd on a copy in the given BN mode (one full batch)."""
    import copy

    m = copy.deepcopy(model).train(train)
    ws = [m[0].weight, m[3].weight]  # H g couples the layers: g is the gradient of every prunable weight
    loss = torch.nn.functional.cross_entropy(m(x) / GRASP_TEMPERATURE, y, reduction="sum") / len(x)
    gs = torch.autograd.grad(loss, ws, create_graph=True)
    hg = torch.autograd.grad(sum((g * g.detach()).sum() for g in gs), ws)
    return ws[0].detach() * hg[0]


def test_grasp_scores_a_copy_in_train_mode_as_its_authors_code_does():
    model, (x, y) = _bn_net(), _data(n=8, n_out=3)
    got = CRITERIA.get("grasp")(_ctx(model, x, y))["0.weight"]
    torch.testing.assert_close(got, _grasp_ref(model, x, y, train=True), rtol=1e-8, atol=1e-16)
    assert not torch.allclose(got, _grasp_ref(model, x, y, train=False))  # the mode matters on this network
    assert model[1].running_mean[0].item() == 0.7  # BN statistics of the scored model untouched


def test_grasp_is_weight_times_hessian_gradient_product():
    model, (x, y) = _linear(), _data()
    w, xn, yn = model[0].weight.detach().numpy().copy(), x.numpy(), y.numpy()
    g = _grad_ce(w, xn, yn, GRASP_TEMPERATURE, mean=True)
    eps = 1e-4  # H g by central differences of the hand-written gradient: no autograd on this side
    hg = (_grad_ce(w + eps * g, xn, yn, GRASP_TEMPERATURE, True) - _grad_ce(w - eps * g, xn, yn, GRASP_TEMPERATURE,
                                                                            True)) / (2 * eps)
    got = CRITERIA.get("grasp")(_ctx(model, x, y))["0.weight"].numpy()
    np.testing.assert_allclose(got, w * hg, rtol=1e-5, atol=1e-14)
    assert (got < 0).any() or (got > 0).any()


def test_synflow_is_the_path_norm_gradient_of_absolute_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.ReLU(), nn.Linear(4, 2, bias=False)).double()
    w1, w2 = (np.abs(m.weight.detach().numpy()) for m in (model[0], model[2]))
    x = torch.zeros(7, 3, dtype=torch.float64)  # synflow never looks at the data, only its shape
    s = CRITERIA.get("synflow")(_ctx(model, x, torch.zeros(7, dtype=torch.long)))
    # R = 1' |W2| |W1| 1: dR/dW1[i,j] = sum_k |W2[k,i]|, dR/dW2[k,i] = sum_j |W1[i,j]|
    np.testing.assert_allclose(s["0.weight"].numpy(), w1 * w2.sum(0)[:, None], rtol=1e-12)
    np.testing.assert_allclose(s["2.weight"].numpy(), w2 * w1.sum(1)[None, :], rtol=1e-12)
    # a masked weight carries no flow: it drops out of the sums and scores zero itself
    mask = masks.ones(model)
    mask["0.weight"][1, 2] = False
    w1m = w1.copy()
    w1m[1, 2] = 0
    s = CRITERIA.get("synflow")(_ctx(model, x, torch.zeros(7, dtype=torch.long), mask))
    np.testing.assert_allclose(s["2.weight"].numpy(), w2 * w1m.sum(1)[None, :], rtol=1e-12)
    assert float(s["0.weight"][1, 2]) == 0.0
    assert model[0].weight.grad is None and float(model[0].weight.detach()[1, 2]) != 0  # the model is untouched


@pytest.mark.parametrize("name", ["snip", "grasp", "synflow"])
def test_at_init_methods_are_registered_with_their_papers(name):
    m = METHODS.get(name)
    assert m.at_init and m.base == name and m.paper and m.rewinds == ("weight",)
    assert m.iterative == (name == "synflow")


def test_fraction_to_reaches_the_exact_count():
    model = nn.Sequential(nn.Linear(13, 7), nn.Linear(7, 3))
    m = masks.ones(model)
    for target in (0.6, 0.36, 0.05):
        scores = {k: torch.rand(v.shape) for k, v in m.items()}
        m = masks.prune(scores, m, masks.fraction_to(m, target))
        assert masks.count(m)[0] == round(masks.count(m)[1] * target)


@pytest.mark.parametrize("name", ["snip", "grasp"])
def test_at_init_scores_use_batch_statistics_and_leave_the_models_bn_untouched(name):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4, bias=False), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2, bias=False))
    model = model.double().eval()
    x, y = _data(n=16, n_out=2)
    x = x * 5 + 3  # far from BN's initial running statistics (mean 0, variance 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = CRITERIA.get(name)(_ctx(model, x, y))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()) and not model.training
    # the same network with BN frozen at its running statistics scores differently: batch stats were used
    frozen = nn.Sequential(model[0], nn.Identity(), model[2], model[3])
    f = CRITERIA.get(name)(_ctx(frozen, x, y))
    assert not torch.allclose(s["0.weight"], f["0.weight"])
