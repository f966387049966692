"""How far a pruned network's *function* moved from its dense model's: the yardstick that explanation
drift is read against. Maps track predictions (a network that predicts other classes explains other
classes), so "the maps changed" says something about the explanations only beyond what the change of
function predicts: the rows also carry map agreement over the images both networks predict alike
(`same_prediction`; docs/methods.md says why that and not a regression across levels).

Both measures compare the two networks' test-set outputs, image by image: top-1 agreement (the fraction
of test images on which both predict the same class, whether right or wrong) and the mean KL divergence
KL(dense || pruned) of their softmax outputs (how much probability mass moved, in nats).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def agreement(log_probs: torch.Tensor, ref_log_probs: torch.Tensor) -> float:
    """Fraction of rows on which the two (N, classes) outputs have the same arg-max."""
    _check(log_probs, ref_log_probs)
    return float((log_probs.argmax(1) == ref_log_probs.argmax(1)).double().mean())


def kl_from(ref_log_probs: torch.Tensor, log_probs: torch.Tensor) -> float:
    """Mean over rows of KL(ref || model) in nats, from log-softmax outputs: torch's `kl_div` with a
    log-space target, so a probability that underflows to 0 in float32 still counts exactly."""
    _check(log_probs, ref_log_probs)
    return float(F.kl_div(log_probs.double(), ref_log_probs.double(), reduction="batchmean", log_target=True))


def columns(log_probs: torch.Tensor, ref_log_probs: torch.Tensor | None) -> dict[str, float | None]:
    """The row's function-change columns against the dense model's outputs; null without them (a trial
    resumed from a checkpoint written before they were kept)."""
    if ref_log_probs is None:
        return {"pred_agreement": None, "pred_kl": None}
    return {"pred_agreement": agreement(log_probs, ref_log_probs), "pred_kl": kl_from(ref_log_probs, log_probs)}


def same_prediction(log_probs: torch.Tensor, ref_log_probs: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Bool per image of `idx` (rows of the test set, e.g. the probe images): both networks predict the
    same class there. Explanation agreement on those images alone is function-matched at the image level:
    where the network's decision did not move, a map that moved moved for another reason."""
    _check(log_probs, ref_log_probs)
    i = idx.cpu()
    return log_probs[i].argmax(1) == ref_log_probs[i].argmax(1)


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"function change compares two (N, classes) outputs of one test set; got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
