"""LRP-guided pruning (Yeom et al. 2021, 'Pruning by explaining'; Hatefi et al. 2024, 'Pruning by
explaining revisited'): a weight's score is the relevance that flows through it, summed over the guide
(training) images, mixed with magnitude by the guidance weight (g = 1: relevance alone).

Relevance comes from zennit with the Epsilon rule in every convolution and linear layer and BatchNorm
merged into its convolution - the composite and canonizer of the Pruning-by-eXplaining authors' code
(erfanhatefi/Pruning-by-eXplaining-in-PyTorch: an all-Epsilon LayerMapComposite with
SequentialMergeBatchNorm). Each image starts its backward pass with relevance 1 on its true class, so
every image weighs the same. zennit propagates relevance to the layers' inputs; the share of it that
passes through weight w_ji of a layer is a_i w_ji R_j / (z_j + eps sign z_j) (the Epsilon rule's
message), summed over output positions: w_ji times the gradient, with respect to w_ji, of
sum_j z_j * stop(R_j / (z_j + eps sign z_j)). That last step is written here because zennit returns the
relevance of inputs, not of parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from lthray.explain.lrp import explainable_copy
from lthray.masks import Scores, prunable
from lthray.methods.base import CRITERIA, METHODS, Method, Needs, ScoreContext

EPSILON = 1e-6


def _stabilise(z: torch.Tensor) -> torch.Tensor:
    return z + EPSILON * torch.where(z >= 0, 1.0, -1.0).to(z)


def weight_relevance(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 128) -> Scores:
    """Relevance of every prunable weight of `model` for the true classes of (x, y), summed over images.
    The model is not changed (a copy is explained)."""
    from zennit.canonizers import SequentialMergeBatchNorm
    from zennit.composites import LayerMapComposite, layer_map_base
    from zennit.rules import Epsilon
    from zennit.types import Convolution, Linear

    m = explainable_copy(model)
    names = {mod: name for name, mod in m.named_modules()}
    layers = {names[mod]: mod for mod in m.modules() if isinstance(mod, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)}
    out = {k: torch.zeros_like(w) for k, w in prunable(m).items()}
    seen: dict[str, list[torch.Tensor]] = {}

    def keep(name: str):  # the layer's input, and the relevance arriving at its output
        def hook(mod: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            seen[name] = [inputs[0].detach()]
            output.register_hook(lambda g: seen[name].append(g.detach()))
        return hook

    composite = LayerMapComposite(layer_map=[*layer_map_base(EPSILON), (Convolution, Epsilon(EPSILON)),
                                             (Linear, Epsilon(EPSILON))], canonizers=[SequentialMergeBatchNorm()])
    with composite.context(m) as hooked:
        handles = [mod.register_forward_hook(keep(name)) for name, mod in layers.items()]
        try:
            for i in range(0, len(x), batch):
                xb, yb = x[i : i + batch].clone().requires_grad_(), y[i : i + batch]
                logits = hooked(xb)
                torch.autograd.grad(logits, xb, torch.nn.functional.one_hot(yb, logits.shape[1]).to(logits))
                for name, mod in layers.items():
                    a, rel = seen[name]
                    w = mod.weight.detach().requires_grad_()  # merged with its BatchNorm while hooked
                    with torch.enable_grad():
                        z = torch.nn.functional.linear(a, w, mod.bias) if isinstance(mod, nn.Linear) else \
                            mod._conv_forward(a, w, mod.bias)
                        (g,) = torch.autograd.grad((z * (rel / _stabilise(z.detach()))).sum(), w)
                    out[f"{name}.weight"] += (w * g).detach()
        finally:
            for h in handles:
                h.remove()
    return out


@CRITERIA.register("lrp")
def lrp_relevance(ctx: ScoreContext) -> Scores:
    """Relevance of each alive weight over the guide images (see the module docstring)."""
    rel = weight_relevance(ctx.model, ctx.need("guide_x"), ctx.need("guide_y"))
    return {k: v for k, v in rel.items() if k in ctx.mask}


METHODS.register("lrp_guided")(Method("magnitude", "lrp", needs=Needs(guide_images=True),
                                      paper="Yeom et al. 2021; Hatefi et al. 2024", color="#d62728"))
