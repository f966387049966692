"""Speed of lthray, as ratios against references measured in the same run.

    python -m bench.run [--check] [--quick] [--threads N] [--demo-sweep]

1. training throughput: lthray's loop (device tensors, vectorised augmentation) vs a torchvision
   DataLoader + per-image transforms loop (the open_lth way) on the same data, model and steps
2. masked-step overhead: lthray's loop with a 10%-density mask vs the same loop with no mask
3. explain share: explain seconds / (train + explain) of one pruned level at the default preset
4. Ray: a sweep of N trials vs the same trials back to back in one process (wall clock)
5. (now rows 9-15, `bench.step`: the training step against the sgemm ceiling, layouts, compile)
6. controls and instability: wall time of a trial (dense + 2 pruned levels, digits preset) with
   `reinit`, `synflow` (100 scoring rounds per level) and `instability.enabled`, each / the same trial with `imp`
7. ROAD: explain.road's imputer against pytorch-grad-cam's (same values), on the demo's probe set
8. one test pass for accuracy and the concept bottleneck's features against two passes

--check exits 1 if a ratio misses its goal. Speed is never asserted in unit tests; it is measured here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench import step
from lthray import data as data_mod
from lthray import masks, schedule
from lthray.config import TrainConfig, from_flat
from lthray.models import build
from lthray.train import train

ROOT = Path(__file__).resolve().parents[1]


def _lthray_loop(d: data_mod.Data, steps: int, mask: masks.Mask | None, epochs: int) -> float:
    model = build("convnet", 10, 0)
    cfg = TrainConfig(epochs=epochs)
    t0 = time.perf_counter()
    train(model, d, cfg, mask=mask, start=0, end=steps, seed=0)
    return time.perf_counter() - t0


def _dataloader_loop(d: data_mod.Data, raw: tuple[np.ndarray, np.ndarray], steps: int, workers: int) -> float:
    """The usual way: uint8 images -> PIL -> RandomCrop/ToTensor/Normalize per image, DataLoader batches."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset
    from torchvision import transforms as T

    tf = T.Compose([T.RandomCrop(32, padding=d.spec.pad, padding_mode="reflect"), T.ToTensor(),
                    T.Normalize(d.mean.flatten().tolist(), d.std.flatten().tolist())])

    class Images(Dataset):
        def __len__(self) -> int:
            return len(raw[1])

        def __getitem__(self, i: int):
            return tf(Image.fromarray(raw[0][i])), int(raw[1][i])

    loader = DataLoader(Images(), batch_size=128, shuffle=True, drop_last=True, num_workers=workers,
                        persistent_workers=workers > 0)
    model = build("convnet", 10, 0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    model.train()
    t0, done = time.perf_counter(), 0
    while done < steps:
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - t0


def bench_training(steps: int) -> list[tuple]:
    d = data_mod.load("digits", 64, "cpu")
    raw = data_mod.DATASETS.get("digits").load(Path("."))
    epochs = -(-steps // data_mod.steps_per_epoch(len(d.train_x), 128))
    _lthray_loop(d, 5, None, epochs)  # warm up allocator and kernels
    ours = min(_lthray_loop(d, steps, None, epochs) for _ in range(2))
    ref0 = _dataloader_loop(d, raw[:2], steps, 0)
    ref2 = _dataloader_loop(d, raw[:2], steps, 2)
    ref = min(ref0, ref2)
    img = steps * 128
    model = build("convnet", 10, 0)
    sparse = masks.prune({k: torch.rand(w.shape) for k, w in masks.prunable(model).items()}, masks.ones(model), 0.9)
    masked = min(_lthray_loop(d, steps, sparse, epochs) for _ in range(2))
    return [
        ("1 train img/s: lthray vs DataLoader+transforms", f"{img / ours:,.0f} vs {img / ref:,.0f} "
         f"(workers 0: {img / ref0:,.0f}, 2: {img / ref2:,.0f})", ref / ours, ">= 3.0", ref / ours >= 3.0),
        ("2 masked step overhead (10% density vs no mask)", f"{masked:.2f}s vs {ours:.2f}s", masked / ours,
         "<= 1.10", masked / ours <= 1.10),
    ]


def bench_explain() -> list[tuple]:
    """One dense level and one pruned level of the digits preset; the share of the pruned level's wall."""
    from lthray.trial import run_trial
    from sweeps.presets import PRESETS

    cfg = from_flat({**PRESETS["digits"].base, "prune.levels": 1})
    with tempfile.TemporaryDirectory() as tmp:
        rows = run_trial(cfg, Path(tmp) / "w", Path(tmp) / "r")
    r = rows[-1]
    share = r["explain_seconds"] / (r["train_seconds"] + r["explain_seconds"])
    parts = _explain_parts(cfg)
    detail = f"explain {r['explain_seconds']:.2f}s / train {r['train_seconds']:.2f}s; " + ", ".join(
        f"{k} {v:.2f}s" for k, v in parts.items())
    return [("3 explain share of a level (digits preset)", detail, share, "<= 0.15", share <= 0.15)]


def _explain_parts(cfg) -> dict[str, float]:
    """Where explain time goes, on the trained dense model of `cfg`."""
    from lthray.explain import concepts
    from lthray.explain.cam import faithfulness, gradcam

    d = data_mod.load(cfg.data.dataset, cfg.data.probe_size, "cpu")
    model = build(cfg.model.name, 10, 0)
    train(model, d, cfg.train, mask=None, start=0, end=schedule.total_steps(cfg), seed=0)
    out, t = {}, time.perf_counter()
    maps = gradcam(model, model.cam_layer, d.probe_x, d.probe_y)
    out["grad-cam"], t = time.perf_counter() - t, time.perf_counter()
    faithfulness(model, d.probe_x, d.probe_y, maps, cfg.explain)
    out[cfg.explain.faithfulness], t = time.perf_counter() - t, time.perf_counter()
    bank = concepts.concept_bank(d, cfg.concepts.clip_model, cfg.concepts.clip_pretrained)
    feats = concepts.features(model, d.train_x)
    out["features"], t = time.perf_counter() - t, time.perf_counter()
    concepts.fit_pcbm(feats, bank.train_sim, d.train_y, steps=cfg.concepts.proj_steps, C=cfg.concepts.C,
                      l1_ratio=cfg.concepts.l1_ratio, seed=0)
    out["pcbm fit"] = time.perf_counter() - t
    return out


def bench_explain_parts() -> list[tuple]:
    """explain.road against pytorch-grad-cam's ROADCombined (the values are equal: tests/lthray/explain/
    test_road.py), and measure's one test pass against evaluate + a second features pass, on the
    fashion-demo preset's probe and test sets with an untrained convnet (time does not depend on weights)."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    from lthray.explain.cam import gradcam
    from lthray.explain.concepts import features
    from lthray.explain.road import ROAD
    from lthray.presets import PRESETS
    from lthray.train import evaluate, evaluate_with_features

    cfg = from_flat(PRESETS["fashion-demo"].base)
    d = data_mod.load(cfg.data.dataset, cfg.data.probe_size, "cpu")
    model = build(cfg.model.name, d.spec.num_classes, 0, d.spec.channels).eval()
    maps = gradcam(model, model.cam_layer, d.probe_x, d.probe_y)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in d.probe_y.tolist()]
    pct = list(cfg.explain.road_percentiles)

    lib = step.best_of(lambda: ROADCombined(percentiles=pct)(d.probe_x, maps, targets, model))
    ours = step.best_of(lambda: ROAD(pct)(d.probe_x, maps, targets, model))
    two = step.best_of(lambda: (evaluate(model, d.test_x, d.test_y), features(model, d.test_x)))
    one = step.best_of(lambda: evaluate_with_features(model, d.test_x, d.test_y))
    return [
        ("7 ROAD: explain.road / pytorch-grad-cam ROADCombined", f"{ours:.2f}s / {lib:.2f}s on "
         f"{len(d.probe_x)} probe images", ours / lib, "<= 0.70", ours / lib <= 0.70),
        ("8 test pass: evaluate_with_features / evaluate + features", f"{one:.2f}s / {two:.2f}s on "
         f"{len(d.test_x)} test images", one / two, "<= 0.60", one / two <= 0.60),
    ]


def bench_controls() -> list[tuple]:
    """Trial wall time of the new controls and of the instability analysis, as ratios to plain IMP."""
    from lthray.trial import run_trial
    from sweeps.presets import PRESETS

    base = {**PRESETS["digits"].base, "prune.levels": 2, "prune.rate": 0.5}
    variants = {"imp": {}, "reinit": {"prune.method": "reinit"}, "synflow": {"prune.method": "synflow"},
                "imp + instability": {"instability.enabled": True}}
    wall = {}
    for name, extra in variants.items():
        cfg = from_flat({**base, **extra})
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run_trial(cfg, Path(tmp) / "w", Path(tmp) / "r", device="cpu")
            wall[name] = time.perf_counter() - t0
    goals = {"reinit": 1.8, "synflow": 1.3, "imp + instability": 2.6}  # reinit: 2 of 3 levels train twice
    return [(f"6 {name} trial / imp trial", f"{wall[name]:.1f}s vs {wall['imp']:.1f}s", wall[name] / wall["imp"],
             f"<= {goal}", wall[name] / wall["imp"] <= goal) for name, goal in goals.items()]


def bench_ray(n: int) -> list[tuple]:
    """N smoke trials through Ray (2 at once, 1 CPU each) vs the same N back to back in one process."""
    from lthray.trial import run_trial
    from sweeps.presets import PRESETS

    base = {**PRESETS["smoke"].base, "train.epochs": 6, "prune.levels": 3}
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, str(ROOT / "sweeps" / "imp_vs_guided.py"), "--preset", "smoke", "--num-samples", str(n),
               # a wide seed range: Optuna then samples n distinct configs (a repeat would finish at once)
               "--storage", tmp, "--name", "bench", "--choice", "seed=" + ",".join(str(i) for i in range(1000)),
               "--set", "prune.method=imp", "--set", "prune.rewind=weight", "--set", "prune.rewind_step=0it",
               "--set", "prune.lambda_fid=0.0", "--set", "train.epochs=6", "--set", "prune.levels=3",
               "--max-concurrent", "2"]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""}
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        ray_wall = time.perf_counter() - t0
        import pandas as pd

        seeds = sorted(pd.read_parquet(Path(tmp) / "bench" / "results")["seed"].unique().tolist())
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for s in seeds:  # the very configs the sweep ran (Optuna may repeat a seed)
            cfg = from_flat({**base, "prune.method": "imp", "prune.rewind": "weight", "prune.rewind_step": "0it",
                             "prune.lambda_fid": 0.0, "seed": s})
            run_trial(cfg, Path(tmp) / f"w{s}", Path(tmp) / "r")
    seq = (time.perf_counter() - t0) * n / len(seeds)
    ratio = ray_wall / seq
    return [(f"4 Ray sweep of {n} trials vs back to back", f"{ray_wall:.1f}s vs {seq:.1f}s", ratio, "<= 1.10",
             ratio <= 1.10)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 if a ratio misses its goal")
    p.add_argument("--quick", action="store_true", help="fewer steps, no Ray (a minute)")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--ray-trials", type=int, default=4)
    p.add_argument("--demo-sweep", action="store_true", help="also time make demo's sweep with train.compile on/off")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {os.cpu_count()} CPUs, "
          f"device {'cuda' if torch.cuda.is_available() else 'cpu'}", flush=True)
    rows = bench_training(40 if args.quick else 120) + bench_explain() + bench_explain_parts() + bench_controls()
    if not args.quick:
        rows += bench_ray(args.ray_trials)
    rows += step.rows(args.threads, quick=args.quick, demo_sweep=args.demo_sweep)
    step.print_rows(rows)
    missed = [r[0] for r in rows if not r[4]]
    return 1 if (args.check and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
