"""The training step on one GPU: eager vs torch.compile vs CUDA graphs, in under 8 minutes.

    python -m bench.gpu                      # convnet (28x28x1) and resnet20 (32x32x3), batch 128
    python -m bench.gpu --device cpu --steps 5 --modes off,default   # the same path on a CPU (a smoke run)

For each model, lthray's own `train` loop (device tensors, augmentation drawn on the device, the learning
rate a device tensor, fused SGD) on random images of the dataset's shape - a step's time does not depend
on pixel values, so no dataset needs downloading - in each `train.compile` mode: steps per second, the
compile warm-up, the ratio to eager, and training FLOP/s against the device's matmul FLOP/s in the step's
own precision (bf16 under autocast on CUDA, float32 elsewhere). Written before a GPU was at hand: its
numbers are pending until someone runs it (docs/performance.md says so).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from lthray import data as data_mod
from lthray.config import TrainConfig
from lthray.models import build
from lthray.train import _autocast, train

SHAPES = {"convnet": ("fashion_mnist", 28, 1), "resnet20": ("cifar10", 32, 3)}


def fake_data(dataset: str, side: int, channels: int, device: str, n: int = 4096) -> data_mod.Data:
    """`n` random uint8 images of the dataset's shape, on `device`, with the dataset's augmentation spec."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, side, side, channels), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    spec = data_mod.DATASETS.get(dataset)
    return data_mod.to_tensors(spec, (x, y), (x[:256], y[:256]), [str(i) for i in range(10)], 16, device)


def matmul_flops(device: torch.device, dtype: torch.dtype) -> float:
    n = 4096 if device.type == "cuda" else 1024
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(3):
        sync(device)
        t = time.perf_counter()
        for _ in range(10):
            a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 * 10 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_flops(name: str, d: data_mod.Data, batch: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = build(name, 10, 0, d.spec.channels).to(d.train_x.device)
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(d.train_x[:batch]), d.train_y[:batch]).backward()
    return fc.get_total_flops()


def time_mode(name: str, d: data_mod.Data, mode: str, steps: int, batch: int) -> tuple[float, float]:
    """(seconds per step, warm-up seconds) of `train` in compile mode `mode`."""
    device = d.train_x.device
    model = build(name, 10, 0, d.spec.channels).to(device)
    cfg = TrainConfig(epochs=100, batch_size=batch, compile=mode)
    sync(device)
    t = time.perf_counter()
    train(model, d, cfg, mask=None, start=0, end=3, seed=0)  # compiles (and records CUDA graphs) here
    sync(device)
    first = time.perf_counter() - t
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        train(model, d, cfg, mask=None, start=3, end=3 + steps, seed=0)
        sync(device)
        best = min(best, time.perf_counter() - t)
    per_step = best / steps
    return per_step, max(0.0, first - 3 * per_step)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", default="convnet,resnet20")
    p.add_argument("--modes", default="off,default,reduce-overhead")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--batch", type=int, default=128)
    a = p.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no GPU; pass --device cpu for a smoke run", file=sys.stderr)
        return 2
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"torch {torch.__version__}, {name}", flush=True)
    for model in a.models.split(","):
        dataset, side, channels = SHAPES[model]
        d = fake_data(dataset, side, channels, a.device)
        precision = torch.bfloat16 if isinstance(_autocast(d.train_x), torch.autocast) else torch.float32
        peak, flops = matmul_flops(device, precision), step_flops(model, d, a.batch)
        eager = None
        for mode in a.modes.split(","):
            try:
                per_step, warm = time_mode(model, d, mode, a.steps, a.batch)
            except Exception as e:  # a mode that cannot run here is a finding, not a crash of the others
                print(f"{model:9s} {mode:16s} failed: {type(e).__name__}: {str(e).splitlines()[0][:160]}", flush=True)
                continue
            eager = per_step if mode == "off" else eager
            vs = f"{per_step / eager:.2f} of eager" if eager else "-"
            print(f"{model:9s} {mode:16s} {1 / per_step:8.1f} steps/s  {vs:14s} warm-up {warm:5.1f} s  "
                  f"{flops / per_step / peak:.3f} of {str(precision)[6:]} matmul ({peak / 1e12:.1f} TFLOP/s)",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
