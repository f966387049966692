import pytest
import torch

from lthray.models import MODELS, build


@pytest.mark.parametrize("name", MODELS.names())
def test_models_name_a_spatial_cam_layer_and_features(name):
    model = build(name, 10, 0).eval()
    x = torch.randn(2, 3, 32, 32)
    seen = {}

    def hook(module, inputs, output):
        seen["shape"] = output.shape

    h = model.cam_layer.register_forward_hook(hook)
    with torch.no_grad():
        out = model(x)
        feats = model.features(x)
    h.remove()
    assert out.shape == (2, 10)
    assert seen["shape"][-1] > 1 and seen["shape"][-2] > 1  # a map Grad-CAM can localise with
    assert feats.shape == (2, model.fc.in_features)
    assert torch.allclose(model.fc(feats), out, atol=1e-5)


def test_build_is_seeded():
    a, b, c = build("resnet20", 10, 1), build("resnet20", 10, 1), build("resnet20", 10, 2)
    assert torch.equal(a.conv.weight, b.conv.weight) and not torch.equal(a.conv.weight, c.conv.weight)


def test_resnet20_has_the_published_size():
    n = sum(p.numel() for p in build("resnet20", 10, 0).parameters())
    assert 0.26e6 < n < 0.28e6  # ~0.27M parameters (He et al. 2016)
