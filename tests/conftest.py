import os

# No test may reach a model hub or the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

from lthray.config import DataConfig, ExplainConfig, PruneConfig, TrainConfig, TrialConfig  # noqa: E402

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def tiny_cfg() -> TrialConfig:
    """A trial that runs in a few seconds on one CPU core: digits, convnet, 2 levels at 50%."""
    return TrialConfig(
        data=DataConfig(probe_size=8),
        train=TrainConfig(epochs=1, batch_size=128),
        prune=PruneConfig(levels=2, rate=0.5, rewind="weight", rewind_step="3it"),
        explain=ExplainConfig(faithfulness="confidence_drop"),
    )


@pytest.fixture(scope="session")
def digits():
    from lthray import data

    return data.load("digits", 8, "cpu")
