"""Localisation against ground-truth object masks: each metric on maps whose answer is known by hand,
the Fashion-MNIST silhouette rule, and the columns of a real trial."""

import numpy as np
import pytest
import torch

from lthray import data
from lthray.explain import localisation as loc


def _obj() -> np.ndarray:
    o = np.zeros((1, 4, 4), dtype=bool)
    o[0, :2, :] = True  # the top half is the object
    return o


def test_energy_inside_is_the_share_of_mass_on_the_object():
    m = np.zeros((1, 4, 4))
    m[0, 0, 0], m[0, 3, 3] = 3.0, 1.0
    assert loc.energy_inside(m, _obj())[0] == pytest.approx(0.75)
    assert loc.energy_inside(np.ones((1, 4, 4)), _obj())[0] == pytest.approx(0.5)  # uniform = area fraction
    assert np.isnan(loc.energy_inside(np.zeros((1, 4, 4)), _obj())[0])


def test_pointing_asks_whether_the_peak_is_on_the_object():
    m = np.zeros((2, 4, 4))
    m[0, 1, 2] = 1.0  # on it
    m[1, 3, 0] = 1.0  # off it
    assert loc.pointing(m, np.repeat(_obj(), 2, 0)).tolist() == [1.0, 0.0]
    flat = np.zeros((1, 4, 4))
    flat[0, 1, 0] = flat[0, 2, 0] = flat[0, 3, 0] = flat[0, 0, 3] = 1.0  # a flat peak, 2 of 4 on the object
    assert loc.pointing(flat, _obj())[0] == pytest.approx(0.5)


def test_concentration_is_the_area_holding_half_the_mass():
    assert loc.concentration(np.ones((1, 10, 10)))[0] == pytest.approx(0.5)  # uniform: half the area
    peak = np.zeros((1, 10, 10))
    peak[0, 5, 5] = 1.0
    assert loc.concentration(peak)[0] == pytest.approx(0.01)  # one pixel of 100
    two = np.zeros((1, 10, 10))
    two[0, 0, 0], two[0, 9, 9] = 1.0, 1.0  # half the mass in each: one pixel holds half
    assert loc.concentration(two)[0] == pytest.approx(0.01)
    three = np.zeros((1, 1, 4))
    three[0, 0, :3] = [0.4, 0.35, 0.25]  # 0.4 < 0.5 <= 0.75: two pixels of four
    assert loc.concentration(three)[0] == pytest.approx(0.5)


def test_fashion_mnist_silhouettes_are_the_pixels_above_the_black_background():
    d = data.load("fashion_mnist", 16, "cpu", 1000)
    obj = data.object_masks(d, d.probe_x)
    raw = (d.probe_x * d.std + d.mean)[:, 0]
    assert obj.shape == tuple(raw.shape) and obj.dtype == bool
    assert (obj == ((raw * 255).round().numpy().astype(int) >= 1)).all()  # the stated rule, in 8-bit units
    assert 0.25 < obj.mean() < 0.75  # garments cover about half the image (50% on the test set)
    assert not obj[:, 0, 0].any()  # corners are background
    assert data.object_masks(data.load("digits", 8, "cpu"), torch.zeros(1, 3, 32, 32)) is None  # no ground truth


def test_a_fashion_trial_rows_carry_localisation_and_chance(tmp_path, tiny_cfg):
    from lthray.config import replace
    from lthray.trial import run_trial

    cfg = replace(tiny_cfg, **{"data.dataset": "fashion_mnist", "data.train_size": 1000, "concepts.enabled": False,
                               "data.probe_size": 16})
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r")
    for r in rows:
        assert 0 <= r["cam_energy_inside"] <= 1 and 0 <= r["cam_pointing"] <= 1
        assert 0 < r["cam_concentration"] <= 1
        assert 0.25 < r["object_area"] < 0.75 and r["object_area"] == rows[0]["object_area"]
    digits = run_trial(tiny_cfg, tmp_path / "w2", tmp_path / "r2")
    assert all(r["cam_energy_inside"] is None and r["cam_pointing"] is None and r["object_area"] is None
               for r in digits)
    assert all(r["cam_concentration"] is not None for r in digits)


def test_a_rows_localisation_is_recomputed_from_its_probe_cams_and_the_probe_images(tmp_path, tiny_cfg):
    from lthray.config import replace
    from lthray.results import GALLERY
    from lthray.trial import run_trial

    cfg = replace(tiny_cfg, **{"data.dataset": "fashion_mnist", "data.train_size": 1000, "concepts.enabled": False,
                               "data.probe_size": GALLERY})  # every probe map is kept in probe_cams
    rows = run_trial(cfg, tmp_path / "w", tmp_path / "r")
    d = data.load("fashion_mnist", GALLERY, "cpu", 1000)
    objects = data.object_masks(d, d.probe_x)
    for r in rows:
        maps = np.asarray(r["probe_cams"], dtype=np.float32).reshape(objects.shape)
        again = loc.columns(maps, objects)
        for k, v in again.items():
            assert r[k] == pytest.approx(v, abs=1e-6), k  # maps are stored as float32
        assert r["object_area"] == pytest.approx(objects.mean())
