"""An ESTIMATE of what preset cifar10-preserve costs on one GPU, from FLOP counts (issue 34).

    python -m bench.preserve_cost [--tflops 30] [--seconds-per-epoch 2]

Counted here (torch.utils.flop_counter on ResNet-20, 32x32x3): one training image (forward + backward), and
one step's Grad-CAM fidelity term (explain.fid_batch images, double backward). The preset's schedule gives
the epochs: per seed, the dense level and its same-initialisation copy, IMP's 7 pruned levels, and each
arm's retrained copy of them (distillation adds a KL on logits: nothing counted). Two conversions, both
assumptions and labelled so: a sustained FLOP rate (a small-batch ResNet-20 reaches a fraction of a GPU's
peak), and, because at batch 128 such a step is bound by kernel launches rather than arithmetic, a
seconds-per-epoch figure. `python -m bench.gpu` measures the real step on a GPU; until then this is the
planning number, and the study page says so.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from lthray.config import from_flat
from lthray.explain.cam import fidelity_loss, gradcam
from lthray.models import build
from lthray.presets import PRESETS

TRAIN_IMAGES = 50_000


def flops(fn: object) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        fn()  # type: ignore[operator]
    return float(fc.get_total_flops())


def per_image_and_fidelity(fid_batch: int) -> tuple[float, float]:
    """Training FLOPs of one image, and of one step's fidelity term."""
    model = build("resnet20", 10, 0, 3)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    image = flops(lambda: F.cross_entropy(model(x), y).backward()) / len(x)
    gx, gy = torch.randn(fid_batch, 3, 32, 32), torch.randint(0, 10, (fid_batch,))
    maps = torch.from_numpy(gradcam(model, model.cam_layer, gx, gy))
    fid = flops(lambda: fidelity_loss(model, model.cam_layer, gx, gy, maps).backward())
    return image, fid


def epochs_per_seed(levels: int, epochs: int) -> dict[str, int]:
    """Training epochs of one seed's three trials (the rewind point's few epochs ignored: an upper bound)."""
    return {"lineage (IMP, shared by the arms)": (levels + 1) * epochs, "same-initialisation copy": epochs,
            "imp_fid copies": levels * epochs, "imp_kd copies": levels * epochs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tflops", type=float, default=30.0, help="assumed sustained training TFLOP/s (default 30)")
    p.add_argument("--seconds-per-epoch", type=float, default=2.0,
                   help="assumed launch-bound s per ResNet-20 epoch at batch 128 (default 2, docs/performance.md)")
    args = p.parse_args(argv)
    preset = PRESETS["cifar10-preserve"]
    cfg = from_flat(preset.base)
    seeds = len({pt["seed"] for pt in preset.points})
    image, fid = per_image_and_fidelity(cfg.explain.fid_batch)
    ep = epochs_per_seed(cfg.prune.levels, cfg.train.epochs)
    steps_per_epoch = TRAIN_IMAGES // cfg.train.batch_size
    total = sum(ep.values()) * TRAIN_IMAGES * image + ep["imp_fid copies"] * steps_per_epoch * fid
    print(f"ResNet-20 training FLOPs per image: {image / 1e6:.1f} M; fidelity term per step "
          f"({cfg.explain.fid_batch} images): {fid / 1e9:.2f} G = {fid / (image * cfg.train.batch_size):.2f} of a "
          f"step of {cfg.train.batch_size}")
    for k, v in ep.items():
        print(f"  {k}: {v} epochs per seed")
    print(f"total for {seeds} seeds: {total / 1e15:.0f} PFLOP")
    hours = total / (args.tflops * 1e12) / 3600
    print(f"ESTIMATE at an assumed {args.tflops:g} TFLOP/s sustained: {hours:.1f} GPU-hours")
    ratio = fid / (image * cfg.train.batch_size)  # the fidelity term as a share of a step's arithmetic
    launch = seeds * args.seconds_per_epoch * (sum(ep.values()) + ep["imp_fid copies"] * ratio)
    print(f"ESTIMATE at an assumed {args.seconds_per_epoch:g} s per epoch (launch-bound): "
          f"{launch / 3600:.1f} GPU-hours")
    return 0


if __name__ == "__main__":
    sys.exit(main())
