import os

# No test may reach a model hub or the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

from lthray.config import (  # noqa: E402
    ConceptConfig,
    DataConfig,
    ExplainConfig,
    PruneConfig,
    TrainConfig,
    TrialConfig,
)

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tiny_cfg() -> TrialConfig:
    """A trial that runs in a few seconds on one CPU core: digits, convnet, 2 levels at 50%."""
    return TrialConfig(
        data=DataConfig(probe_size=8),
        train=TrainConfig(epochs=1, batch_size=128),
        prune=PruneConfig(levels=2, rate=0.5, rewind="weight", rewind_step="3it"),
        explain=ExplainConfig(faithfulness="confidence_drop", guide_size=32, fid_batch=8, same_init_floor=False),
        concepts=ConceptConfig(proj_steps=30),
    )


@pytest.fixture(scope="session")
def digits():
    from lthray import data

    return data.load("digits", 8, "cpu")


def _row(**kw):
    r = {
        "sweep": "s", "run_id": "run_x", "trial_id": "t1", "method": "imp", "scope": "global", "model": "convnet",
        "dataset": "digits", "rewind": "weight", "rewind_step": 0, "rewind_spec": "0it", "guidance_weight": 0.0,
        "lambda_fid": 0.0, "kd_weight": 0.0, "kd_temperature": 4.0,
        "seed": 0, "level": 0, "density": 1.0, "status": "ok", "test_acc": 0.9, "test_loss": 0.3,
        "cam_spearman": 1.0, "cam_iou": 1.0, "cam_faithfulness": 0.1, "concept_bank": "lthray-tiny-clip/random",
        "pcbm_acc": 0.8, "concept_topk_overlap": 1.0, "concept_weight_spearman": 1.0,
        "top_concepts": [f"{c}: a loop | a stroke" for c in range(10)], "probe_cams": [0.5] * (4 * 32 * 32),
        "instability_barrier": None, "instability_errors": None,
        "cam_energy_inside": None, "cam_pointing": None, "cam_concentration": None, "object_area": None,
        "lrp_spearman": None, "occlusion_spearman": None, "floor_occlusion_spearman": None,
        "occlusion_seconds": None, "lrp_energy_inside": None, "lrp_pointing": None, "lrp_concentration": None,
        "cam_sanity_spearman": None, "lrp_sanity_spearman": None, "empty_layers": [], "reference_cams": None,
        "reference_lrp": None, "concept_refit_overlap": None, "concept_refit_spearman": None, "shared_from": None,
        "concepts_kept": None, "concept_random_overlap": None, "concept_random_spearman": None,
        "cascade_layers": None, "cam_cascade_spearman": None, "lrp_cascade_spearman": None,
        "weight_move_quantiles": None, "weights_still": None, "first_filters": None, "first_filters_shape": None,
        "cam_seconds": None, "faithfulness_seconds": None, "lrp_seconds": None, "sanity_seconds": None,
        "pcbm_seconds": None, "eval_seconds": None, "extra_metrics": None, "pred_agreement": None, "pred_kl": None,
        "floor_test_acc": None, "floor_pred_agreement": None, "floor_pred_kl": None, "floor_cam_spearman": None,
        "floor_cam_iou": None, "floor_lrp_spearman": None, "floor_concept_topk_overlap": None,
        "floor_concept_weight_spearman": None, "cam_spearman_same_pred": None, "lrp_spearman_same_pred": None,
        "floor_cam_spearman_same_pred": None, "floor_lrp_spearman_same_pred": None,
        "train_steps": 10, "train_seconds": 1.0, "explain_seconds": 0.1, "git_sha": "abc", "config_json": "{}",
    }
    r.update(kw)
    return r


@pytest.fixture
def make_row():
    """A valid result row; keyword arguments override columns."""
    return _row


@pytest.fixture
def synthetic_cifar(tmp_path, monkeypatch):
    """A CIFAR-10 archive in torchvision's format with 5 x 48 training images (CIFAR-10 cannot be had here),
    as LTHRAY_DATA; its classes are learnable: a bright square whose position is the class."""
    import pickle

    import numpy as np
    import torchvision.datasets as tvd
    import torchvision.datasets.cifar as tv_cifar

    from lthray import data
    root = tmp_path / "data" / "cifar10" / "cifar-10-batches-py"
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = rng.integers(0, 10, 48)
        img = rng.integers(0, 80, (48, 3, 32, 32), dtype=np.uint8)
        for i, c in enumerate(labels):  # a learnable class: a bright square whose position is the class
            img[i, c % 3, 3 * c : 3 * c + 6, 3 * c : 3 * c + 6] = 250
        with open(root / name, "wb") as fh:
            pickle.dump({"data": img.reshape(48, 3072), "labels": labels.tolist()}, fh)
    with open(root / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, fh)
    # torchvision checks md5s of the real files; these are generated stand-ins in the same format
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    monkeypatch.setenv("LTHRAY_DATA", str(tmp_path / "data"))
    data.load.cache_clear()
    yield tmp_path
    data.load.cache_clear()
