"""The training loop, readable top to bottom (airbench style): SGD + Nesterov, warmup then cosine.

Every step is a pure function of (seed, step): the epoch's order comes from a generator seeded by
(seed, epoch) and the augmentation from one seeded by (seed, step), so training resumed or rewound to
step k sees exactly the batches an uninterrupted run would have seen from step k on.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lthray import masks
from lthray.config import TrainConfig
from lthray.data import Data, Salt, batch_at, epoch_order, memory_format, step_seed, steps_per_epoch
from lthray.masks import Mask
from lthray.models.common import CamModel
from lthray.modes import eval_mode


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Learning rate before optimizer step `step` of a `total`-step schedule."""
    warm = int(cfg.warmup * total)
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    lo = cfg.lr * cfg.final_lr
    return lo + 0.5 * (cfg.lr - lo) * (1 + math.cos(math.pi * min(1.0, t)))


@dataclass
class TrainResult:
    steps: int
    seconds: float
    last_loss: float


def _optimizer(model: nn.Module, cfg: TrainConfig, lr: torch.Tensor) -> torch.optim.Optimizer:
    """SGD whose learning rate is a device tensor (`lr`, rewritten before every step by a device copy).

    On CUDA the fused kernel reads that tensor where it lies; the default path would call `.item()` on
    it, a host sync per step. On CPU the default path is kept: bit-for-bit the float-lr results."""
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                           weight_decay=cfg.weight_decay, fused=lr.device.type == "cuda" or None)


def lr_table(start: int, end: int, cfg: TrainConfig, spe: int, constant_lr: float | None,
             like: torch.Tensor) -> torch.Tensor:
    """Steps [start, end)'s learning rates as one tensor on `like`'s device and dtype: the loop copies
    entry k into the optimizer's lr tensor on the device, so no step hands the host a float."""
    rates = [constant_lr if constant_lr is not None else lr_at(s, cfg.epochs * spe, cfg) for s in range(start, end)]
    return torch.tensor(rates or [cfg.lr], dtype=like.dtype).to(like.device)


def _autocast(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA in float32; float64 asks for exactness, and CPUs gain nothing from it."""
    fast = x.device.type == "cuda" and x.dtype == torch.float32
    return torch.autocast("cuda", dtype=torch.bfloat16) if fast else contextlib.nullcontext()


def _augment_rng(seed: int, step: int, device: torch.device) -> torch.Generator:
    """Step `step`'s augmentation draws: a pure function of (seed, step), so a resumed run replays them.

    The generator lives on the data's device, so the draws are made there: no per-step copy of random
    numbers from pageable host memory. On CPU this is the very stream it always was; a CUDA generator
    (Philox) draws another stream than the CPU's (mt19937), so GPU batches differ from CPU ones (they
    always differed in float sums)."""
    return torch.Generator(device=device).manual_seed(step_seed(seed, Salt.AUGMENT, step))


def _eager(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return model(x)


@functools.cache
def compiled_forward(mode: str = "default") -> Callable[[nn.Module, torch.Tensor], torch.Tensor]:
    """The training forward under `torch.compile` in `mode` (`train.compile`), made once per process.

    The model is an argument, not a closure: dynamo inlines nn.Modules and guards on their class,
    shapes and dtypes rather than their identity, so every level and every trial of one model shape in
    this process (Ray's `reuse_actors` keeps it) reuses one compilation; tests count them. AOTAutograd
    compiles the backward with it. The mask re-zero, the optimizer step and an `extra_loss` stay eager:
    the fidelity term differentiates Grad-CAM maps (a double backward), which AOTAutograd refuses
    ("torch.compile with aot_autograd does not currently support double backward", pytorch#92348;
    still open as pytorch#183603), so it cannot be compiled, only measured eager."""
    _inductor_cache_per_isa()
    return torch.compile(_eager, dynamic=False, mode=None if mode == "default" else mode)


def _inductor_cache_per_isa() -> None:
    """Keep inductor's on-disk kernels in one folder per SIMD instruction set.

    torch 2.14's FX graph cache key leaves out the vector ISA its C++ was generated for: a process run
    under another ISA (ATEN_CPU_CAPABILITY=avx2 on an AVX-512 CPU, or nodes of two CPU kinds sharing a
    home directory) loads the other's kernels and trains on garbage (measured here: NaN weights and
    out-of-range max-pool indices; tests/lthray/test_compile.py reproduces it). A folder per ISA, under
    the user's TORCHINDUCTOR_CACHE_DIR or torch's default, closes that door; set before the first compile."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir()
    leaf = "isa-" + (str(pick_vec_isa()).replace(" ", "-") or "none")
    if os.path.basename(base) != leaf:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(base, leaf)


def _batches_from(data: Data, batch_size: int, seed: int, start: int,
                  end: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The augmented batches of steps [start, end), with their images' indices in the training set: each a
    pure function of (seed, step)."""
    spe, order, order_epoch = steps_per_epoch(len(data.train_x), batch_size), torch.empty(0), -1
    for step in range(start, end):
        epoch, i = divmod(step, spe)
        if epoch != order_epoch:  # one host-to-device copy an epoch
            order, order_epoch = epoch_order(len(data.train_x), seed, epoch).to(data.train_x.device), epoch
        x, y = batch_at(data, order, i, batch_size, _augment_rng(seed, step, data.train_x.device))
        yield x, y, order[i * batch_size : (i + 1) * batch_size]


@dataclass(frozen=True)
class Distill:
    """Knowledge distillation to a teacher (Hinton et al. 2015): + weight * T^2 * KL(softmax(teacher / T) ||
    softmax(student / T)), batch mean, T = temperature (T^2 keeps the gradient's scale as T changes).

    The teacher's logits are computed once, on the un-augmented training images (`logits[i]` for image i),
    and read by index: distillation then costs a KL on logits the step computes anyway, not a second
    forward pass; under augmentation the target is the un-augmented image's (stated in docs/methods.md)."""

    logits: torch.Tensor  # N x classes, aligned with the training images, on their device
    weight: float
    temperature: float

    def loss(self, out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        t = self.temperature
        student = F.log_softmax(out.float() / t, 1)
        teacher = F.log_softmax(self.logits[idx].float() / t, 1)
        return self.weight * t * t * F.kl_div(student, teacher, reduction="batchmean", log_target=True)


# Progress inside a level for an interactive run (`lthray trial`): hook(steps_done, steps) at the start and about 20
# times a call. A context variable, not a parameter: the loop sits four calls below the command, and only the
# command's display reads it; it reads no tensor, so it adds no device sync.
PROGRESS: ContextVar[Callable[[int, int], None] | None] = ContextVar("lthray_train_progress", default=None)


def _progress(start: int, end: int) -> Callable[[int], None]:
    """What the loop calls after each step: PROGRESS's hook every ~5% of [start, end) (told of the start
    at once), or nothing."""
    hook, total, every = PROGRESS.get(), end - start, max(1, (end - start) // 20)
    if hook is None:
        return lambda step: None
    hook(0, total)

    def tick(step: int) -> None:
        if (step + 1 - start) % every == 0 or step + 1 == end:
            hook(step + 1 - start, total)

    return tick


def _loss(model: nn.Module, out: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, label_smoothing: float,
          distill: Distill | None, extra_loss: Callable[[nn.Module], torch.Tensor] | None) -> torch.Tensor:
    """Cross-entropy plus a retraining arm's extra term: distillation (read by the batch's indices) or a
    term of the model itself (the Grad-CAM fidelity loss)."""
    loss = F.cross_entropy(out, y, label_smoothing=label_smoothing)
    if distill is not None:
        loss = loss + distill.loss(out, idx)
    if extra_loss is not None:
        loss = loss + extra_loss(model)
    return loss


def train(
    model: nn.Module,
    data: Data,
    cfg: TrainConfig,
    *,
    mask: Mask | None,
    start: int,
    end: int,
    seed: int,
    constant_lr: float | None = None,
    on_step: Callable[[int], None] | None = None,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    distill: Distill | None = None,
) -> TrainResult:
    """Train optimizer steps [start, end) of the schedule, masked weights held at exactly zero.

    `constant_lr` replaces the schedule (fine-tuning). `on_step(s)` runs before step s, so at s = k it
    sees the weights after k steps: the rewind point. A fresh optimizer is made: momentum is not rewound.
    The model is put in the data's memory format (`data.memory_format`). Raises Diverged if the loss
    stops being finite.
    """
    spe = steps_per_epoch(len(data.train_x), cfg.batch_size)
    model.to(memory_format=memory_format(data.train_x.dtype))
    masked = masks.as_float(model, mask or {})
    masks.rezero(*masked)
    lrs = lr_table(start, end, cfg, spe, constant_lr, data.train_x)
    lr = lrs[0].clone()
    opt, autocast = _optimizer(model, cfg, lr), _autocast(data.train_x)
    forward = _eager if cfg.compile == "off" else compiled_forward(cfg.compile)
    model.train()
    t0, last_loss = time.perf_counter(), torch.zeros((), device=data.train_x.device)
    tick, batches = _progress(start, end), _batches_from(data, cfg.batch_size, seed, start, end)
    for step, (x, y, idx) in zip(range(start, end), batches, strict=True):
        if on_step is not None:
            on_step(step)
        lr.copy_(lrs[step - start])
        with autocast:
            loss = _loss(model, forward(model, x), y, idx, cfg.label_smoothing, distill, extra_loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        masks.rezero(*masked)
        last_loss = loss.detach()
        # A host sync every 25 steps is enough to catch divergence without stalling a GPU each step.
        if step % 25 == 0 and not torch.isfinite(last_loss):
            raise Diverged(f"loss became {float(last_loss)} at step {step}")
        tick(step)
    return _finished(last_loss, start, end, t0)


def _finished(last_loss: torch.Tensor, start: int, end: int, t0: float) -> TrainResult:
    """The result of training steps [start, end), read with one host sync; Diverged if the last loss is not finite."""
    loss_val = float(last_loss) if end > start else float("nan")
    if end > start and not math.isfinite(loss_val):
        raise Diverged(f"loss became {loss_val} at step {end - 1}")
    return TrainResult(steps=end - start, seconds=time.perf_counter() - t0, last_loss=loss_val)


def _accuracy_loss(outputs: Iterator[tuple[slice, torch.Tensor]], y: torch.Tensor,
                   log_probs: list[torch.Tensor] | None = None) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of per-batch logits against y; each batch's log-softmax (float32)
    is appended to `log_probs` when given.

    Sums stay on the device (float64) and are read once at the end: one host sync per evaluation, not
    one per batch, which on a GPU would stall the queue after every batch.
    """
    correct = torch.zeros((), dtype=torch.int64, device=y.device)
    loss = torch.zeros((), dtype=torch.float64, device=y.device)
    for sl, out in outputs:
        out = out if out.dtype == torch.float64 else out.float()
        loss += F.cross_entropy(out, y[sl], reduction="sum").double()
        correct += (out.argmax(1) == y[sl]).sum()
        if log_probs is not None:
            log_probs.append(F.log_softmax(out, 1).float())
    return int(correct) / len(y), float(loss) / len(y)


def _batches(n: int, batch_size: int) -> Iterator[slice]:
    return (slice(i, i + batch_size) for i in range(0, n, batch_size))


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) on (x, y); the model's train/eval mode is restored afterwards."""
    with eval_mode(model):
        return _accuracy_loss(((sl, model(x[sl])) for sl in _batches(len(x), batch_size)), y)


@dataclass(frozen=True)
class Evaluation:
    """One pass over a test set: accuracy, mean cross-entropy, the log-softmax of every image (float32,
    on the CPU: what function change is measured from) and, when asked for, the penultimate features."""

    acc: float
    loss: float
    log_probs: torch.Tensor
    features: torch.Tensor | None


@torch.no_grad()
def evaluate_test(model: CamModel, x: torch.Tensor, y: torch.Tensor, *, features: bool,
                  batch_size: int = 256) -> Evaluation:
    """`evaluate`'s accuracy and loss, the log-softmax of x and (`features`) its penultimate features,
    from one pass over x.

    The logits are `model.fc(model.features(batch))`, which is what `CamModel.forward` computes, in the
    same batches: accuracy and loss equal `evaluate`'s bit for bit. The features are what
    `explain.concepts.features` returns (float32, or float64 for a float64 model), so the concept
    bottleneck's test accuracy needs no second pass over the test set - that pass was over half of a demo
    level's PCBM seconds (measured, bench.run's explain parts)."""
    feats: list[torch.Tensor] = []
    log_probs: list[torch.Tensor] = []

    def outputs() -> Iterator[tuple[slice, torch.Tensor]]:
        for sl in _batches(len(x), batch_size):
            f = model.features(x[sl])
            if features:
                feats.append(f if f.dtype == torch.float64 else f.float())
            yield sl, model.fc(f)

    with eval_mode(model):
        acc, loss = _accuracy_loss(outputs(), y, log_probs)
    return Evaluation(acc, loss, torch.cat(log_probs).cpu(), torch.cat(feats) if features else None)


def evaluate_with_features(model: CamModel, x: torch.Tensor, y: torch.Tensor,
                           batch_size: int = 256) -> tuple[float, float, torch.Tensor]:
    """(accuracy, mean cross-entropy, penultimate features) of x from one pass (`evaluate_test`)."""
    e = evaluate_test(model, x, y, features=True, batch_size=batch_size)
    assert e.features is not None
    return e.acc, e.loss, e.features
