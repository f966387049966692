"""explain.road must be pytorch-grad-cam's ROAD exactly, only faster."""

import numpy as np
import pytest
import torch
from pytorch_grad_cam.metrics.road import NoisyLinearImputer, ROADCombined, neighbors_weights
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

from lthray.explain.road import ROAD, Imputer, sparse_system
from lthray.models import build


@pytest.mark.parametrize("share", [0.1, 0.5, 0.9])
def test_the_system_is_the_librarys_matrix_and_right_hand_side(share):
    rng = np.random.default_rng(0)
    img = rng.random((3, 12, 9)).astype(np.float32)
    mask = (rng.random((12, 9)) > share).astype(np.float32)  # 0 = to impute; edges and corners included
    mask[0, 0] = mask[-1, -1] = 0
    a_lib, b_lib = NoisyLinearImputer.setup_sparse_system(mask, img, neighbors_weights)
    a, b = sparse_system(mask, img)
    assert np.array_equal(b, b_lib)
    assert (a != a_lib.tocsc()).nnz == 0 and a.shape == a_lib.shape


def test_imputed_images_equal_the_librarys_noise_included():
    rng = np.random.default_rng(1)
    img = torch.from_numpy(rng.random((3, 16, 16)).astype(np.float32))
    mask = torch.from_numpy((rng.random((16, 16)) > 0.4).astype(np.float32))
    torch.manual_seed(0)
    want = NoisyLinearImputer()(img, mask)
    torch.manual_seed(0)
    assert torch.equal(Imputer()(img, mask), want)


def test_road_scores_equal_the_librarys(digits):
    model = build("convnet", 10, 0).eval()
    x, y = digits.probe_x[:6], digits.probe_y[:6]
    maps = np.random.default_rng(2).random((6, *x.shape[-2:])).astype(np.float32)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in y.tolist()]
    torch.manual_seed(0)
    want = ROADCombined(percentiles=[20, 60])(x, maps, targets, model)
    torch.manual_seed(0)
    assert np.array_equal(ROAD([20, 60])(x, maps, targets, model), want)
