"""The training step's speed on this machine, as ratios measured in one run (issue 35).

    python -m bench.step [--threads N] [--demo-sweep] [--only 16]

Rows (each a ratio of two things measured here, now):
  9  training FLOP/s / sgemm FLOP/s on the same thread(s): lthray's `train` loop with the default settings on
     the study's data (Fashion-MNIST 28x28, convnet, batch 128; digits 32x32 when Fashion-MNIST is absent)
     against a 1024x1024 float32 matmul, at one thread (a sweep's trial) and at --threads
  10 channels-last / NCHW: the same bare step (forward, backward, SGD) with model and batch in each layout
  11 compiled / eager: the `train` loop with train.compile on and off (both channels-last, warm), and the
     compiled step against the NCHW eager step the issue measured
  12 compile warm-up / one full-length `fashion` level, cold (an empty inductor cache) and warm (a new
     process reusing the on-disk cache, as every Ray worker after the first does)
  13 two 1-thread trainings at once / one 2-thread training: steps per second on 2 cores (a sweep's
     setting: one thread per trial)
  14 eval pass with conv+BN folded / the channels-last eval pass (10,000 test images)
  15 (--demo-sweep, ~20 min) the `make demo` sweep's wall with train.compile=true / false
  16 the retraining arms' extra losses (issue 34): the `train` loop with distillation to a teacher's logits
     (train.Distill) / without, and with the Grad-CAM fidelity term (lambda_fid, explain.fid_batch 32) / without

Timings are never asserted in tests; goals are checked here and reported by `--check`.
"""

from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from lthray import data as data_mod
from lthray.config import TrainConfig, from_flat
from lthray.models import build
from lthray.presets import PRESETS
from lthray.train import evaluate, train

ROOT = Path(__file__).resolve().parents[1]
Row = tuple[str, str, float, str, bool]


def best_of(f: Callable[[], object], n: int = 3) -> float:
    """The least wall time of n calls: noise on a shared machine only ever adds time."""
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


def sgemm_flops() -> float:
    """float32 FLOP/s of a 1024x1024 matmul on torch's current threads (the ceiling the issue names)."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    a @ b
    return 2 * 1024**3 * 10 / best_of(lambda: [a @ b for _ in range(10)], 5)


def study_data() -> data_mod.Data:
    try:
        return data_mod.load("fashion_mnist", 64, "cpu")
    except data_mod.DataUnavailableError:
        return data_mod.load("digits", 64, "cpu")


def step_flops(d: data_mod.Data) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model = build("convnet", d.spec.num_classes, 0, d.spec.channels)
    with FlopCounterMode(display=False) as fc:
        F.cross_entropy(model(d.train_x[:128]), d.train_y[:128]).backward()
    return fc.get_total_flops()


def loop_step(d: data_mod.Data, compile: str = "off", steps: int = 30) -> float:
    """Seconds per step of lthray's `train` loop (augmentation, mask re-zero and all), warm."""
    model = build("convnet", d.spec.num_classes, 0, d.spec.channels)
    cfg = TrainConfig(epochs=1, compile=compile)
    train(model, d, cfg, mask=None, start=0, end=3, seed=0)
    return best_of(lambda: train(model, d, cfg, mask=None, start=0, end=steps, seed=0)) / steps


def bare_step(d: data_mod.Data, fmt: torch.memory_format, steps: int = 30) -> float:
    """Seconds per step of forward + backward + SGD alone, model and batch in memory format `fmt`."""
    model = build("convnet", d.spec.num_classes, 0, d.spec.channels).to(memory_format=fmt)
    # clone, not contiguous: a one-channel batch is contiguous in both layouts, so only a copy with
    # the format's own strides makes the convolutions pick that layout
    x, y = d.train_x[:128].clone(memory_format=fmt), d.train_y[:128]
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def run() -> None:
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run()
    return best_of(run) / steps


def bench_ceiling(d: data_mod.Data, threads: int) -> list[Row]:
    rows, flops = [], step_flops(d)
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        achieved, peak = flops / loop_step(d), sgemm_flops()
        goal = n == 1  # the goal is a sweep's setting, one thread a trial; more threads are reported
        rows.append((f"9 training FLOP/s / sgemm FLOP/s, {n} thread{'s' * (n > 1)}",
                     f"{achieved / 1e9:.1f} / {peak / 1e9:.1f} GFLOP/s, {d.spec.name} batch 128, "
                     f"{flops / 128 / 1e6:.1f} MFLOP/image", achieved / peak, ">= 0.60" if goal else "(report)",
                     achieved / peak >= 0.6 or not goal))
    torch.set_num_threads(threads)
    return rows


def bench_layout_and_compile(d: data_mod.Data) -> list[Row]:
    nchw, nhwc = bare_step(d, torch.contiguous_format), bare_step(d, torch.channels_last)
    eager, compiled = loop_step(d), loop_step(d, compile="default")
    return [
        ("10 step: channels-last / NCHW (eager)", f"{nhwc * 1e3:.1f} / {nchw * 1e3:.1f} ms", nhwc / nchw, "<= 1.00",
         nhwc <= nchw),
        ("11 train loop: compiled / eager (channels-last)", f"{compiled * 1e3:.1f} / {eager * 1e3:.1f} ms",
         compiled / eager, "<= 0.80", compiled / eager <= 0.8),
        ("11 compiled loop / NCHW eager step (the issue's baseline)", f"{compiled * 1e3:.1f} / {nchw * 1e3:.1f} ms",
         compiled / nchw, "(report)", True),
    ]


_WARMUP = """
import sys, time, torch
torch.set_num_threads(1)
from bench.step import study_data, loop_step
from lthray.config import TrainConfig
from lthray.models import build
from lthray.train import train
d = study_data()
m = build("convnet", d.spec.num_classes, 0, d.spec.channels)
t = time.perf_counter()
train(m, d, TrainConfig(epochs=1, compile=True), mask=None, start=0, end=3, seed=0)
first = time.perf_counter() - t
print(first - 3 * loop_step(d, compile="default", steps=10))
"""


def bench_warmup(d: data_mod.Data) -> list[Row]:
    """Compile warm-up in fresh processes against one full-length level of the `fashion` preset, whose
    training is epochs x steps-per-epoch eager steps at one thread (its explain step, ~6 s, left out)."""
    cfg = from_flat(PRESETS["fashion"].base)
    level = cfg.train.epochs * data_mod.steps_per_epoch(60_000, cfg.train.batch_size) * loop_step(d)
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
        for kind in ("cold", "warm"):  # the second process finds the first one's compiled kernels on disk
            run = subprocess.run([sys.executable, "-c", _WARMUP], env=env, cwd=ROOT, capture_output=True, text=True,
                                 check=True)
            out[kind] = float(run.stdout.strip().splitlines()[-1])
    return [(f"12 compile warm-up ({kind}) / one full-length fashion level", f"{out[kind]:.1f} s / {level:.0f} s",
             out[kind] / level, "(report)", True) for kind in ("cold", "warm")]


_TRAIN = """
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
from bench.step import study_data, loop_step
print(1 / loop_step(study_data(), steps=60))
"""


def bench_threads() -> list[Row]:
    """Steps/s of two 1-thread trainings side by side against one 2-thread training (2 cores)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def launch(threads: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _TRAIN, str(threads)], env=env, cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)

    pair = [launch(1), launch(1)]
    side_by_side = sum(float(p.communicate()[0].strip().splitlines()[-1]) for p in pair)
    one = launch(2)
    two_threads = float(one.communicate()[0].strip().splitlines()[-1])
    return [("13 two 1-thread trainings / one 2-thread training", f"{side_by_side:.1f} vs {two_threads:.1f} steps/s",
             side_by_side / two_threads, ">= 1.00", side_by_side >= two_threads)]


def bench_eval_fold(d: data_mod.Data) -> list[Row]:
    """The eval pass with each conv's BatchNorm folded into it (oneDNN then runs conv+ReLU), against the
    channels-last eval pass lthray runs. Reported, not adopted unless it pays: see docs/performance.md."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model = build("convnet", d.spec.num_classes, 0, d.spec.channels).to(memory_format=torch.channels_last).eval()
    folded = copy.deepcopy(model)
    for block in (m for m in folded.body if isinstance(m, torch.nn.Sequential)):
        block[0], block[1] = fuse_conv_bn_eval(block[0], block[1]), torch.nn.Identity()
    plain = best_of(lambda: evaluate(model, d.test_x, d.test_y))
    fused = best_of(lambda: evaluate(folded, d.test_x, d.test_y))
    return [("14 eval pass: conv+BN folded / channels-last", f"{fused:.2f} / {plain:.2f} s on {len(d.test_x)} images",
             fused / plain, "(report)", True)]


def bench_demo_sweep() -> list[Row]:
    """`make demo`'s sweep twice, train.compile off then on, each in its own storage folder (~20 min)."""
    wall = {}
    for on in ("false", "true"):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "sweeps" / "imp_vs_guided.py"), "--preset", "fashion-demo",
                            "--storage", tmp, "--name", "bench", "--set", f"train.compile={on}"], check=True,
                           capture_output=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": ""})
            wall[on] = time.perf_counter() - t
    ratio = wall["true"] / wall["false"]
    return [("15 demo sweep: train.compile=true / false", f"{wall['true']:.0f} s vs {wall['false']:.0f} s", ratio,
             "<= 1.00", ratio <= 1.0)]


def bench_retrain_losses(d: data_mod.Data, steps: int = 30) -> list[Row]:
    """Row 16: what each retraining arm's extra loss adds to a training step (one thread, warm)."""
    from lthray.explain.cam import fidelity_loss, gradcam
    from lthray.train import Distill

    model = build("convnet", d.spec.num_classes, 0, d.spec.channels)
    cfg = TrainConfig(epochs=1)
    teacher = torch.randn(len(d.train_x), d.spec.num_classes)
    gx, gy = d.train_x[:256], d.train_y[:256]
    maps = torch.from_numpy(gradcam(model, model.cam_layer, gx, gy))
    calls = [0]

    def fid(m: torch.nn.Module) -> torch.Tensor:
        i = (calls[0] * 32) % len(gx)
        calls[0] += 1
        return fidelity_loss(m, m.cam_layer, gx[i : i + 32], gy[i : i + 32], maps[i : i + 32])

    def run(**kw: object) -> float:
        train(model, d, cfg, mask=None, start=0, end=3, seed=0, **kw)
        return best_of(lambda: train(model, d, cfg, mask=None, start=0, end=steps, seed=0, **kw)) / steps

    plain, kd, fidelity = run(), run(distill=Distill(teacher, 1.0, 4.0)), run(extra_loss=fid)
    return [
        ("16 train loop: + distillation / plain", f"{kd * 1e3:.1f} / {plain * 1e3:.1f} ms", kd / plain, "<= 1.10",
         kd / plain <= 1.10),
        ("16 train loop: + Grad-CAM fidelity (32 images) / plain", f"{fidelity * 1e3:.1f} / {plain * 1e3:.1f} ms",
         fidelity / plain, "(report)", True),
    ]


def rows(threads: int, *, quick: bool = False, demo_sweep: bool = False) -> list[Row]:
    """Rows 9-16; `quick` leaves out the ones that start processes (12, 13)."""
    d = study_data()
    out = bench_ceiling(d, threads)
    torch.set_num_threads(1)  # a sweep's trial: the layouts, compile and eval rows at one thread
    out += bench_layout_and_compile(d) + ([] if quick else bench_warmup(d)) + bench_eval_fold(d)
    out += bench_retrain_losses(d)
    torch.set_num_threads(threads)
    out += [] if quick else bench_threads()
    return out + (bench_demo_sweep() if demo_sweep else [])


def print_rows(table: list[Row]) -> None:
    w = max(len(r[0]) for r in table)
    print(f"\n{'measure'.ljust(w)}  {'ratio':>7}  {'goal':>8}  ok  detail")
    for name, detail, ratio, goal, ok in table:
        print(f"{name.ljust(w)}  {ratio:7.2f}  {goal:>8}  {'yes' if ok else 'NO ':3} {detail}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="exit 1 if a ratio misses its goal")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--demo-sweep", action="store_true", help="also time make demo's sweep with compile on and off")
    p.add_argument("--only", type=int, choices=[16], help="just this row (16: the retraining arms' losses, ~1 min)")
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs", flush=True)
    if args.only == 16:
        torch.set_num_threads(1)
        table = bench_retrain_losses(study_data())
    else:
        table = rows(args.threads, demo_sweep=args.demo_sweep)
    print_rows(table)
    return 1 if args.check and not all(r[4] for r in table) else 0


if __name__ == "__main__":
    sys.exit(main())
