"""Post-hoc concept bottleneck models (PCBM, Yuksekgonul et al. 2023) on each level's backbone.

1. Concept bank (open_clip): text embeddings of a shipped concept vocabulary, and CLIP image embeddings
   of the dataset, give CLIP image-concept similarities S (images x concepts). They do not change with
   pruning, so they are computed once per (dataset, CLIP model) and cached on disk.
2. The pruned backbone is not CLIP, so its penultimate features are mapped to concepts the way
   Label-free CBM does (Oikarinen et al. 2023): a linear projection trained so that, concept by concept,
   its activations over the images match S under the cos^3 similarity. We use this rather than CAVs
   because CAVs need images labelled with each concept, which neither digits nor CIFAR-10 have.
3. A sparse concept -> class layer: elastic-net logistic regression (scikit-learn), per level.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lthray.data import Data, cache_dir
from lthray.explain.rank import spearman
from lthray.modes import eval_mode
from lthray.storage import atomic_torch_save, exclusive

HERE = Path(__file__).resolve().parent
VOCAB_DIR = HERE.parent / "concepts"
CLIP_CONFIGS = HERE / "clip_configs"


class ConceptBankUnavailable(RuntimeError):
    """Pretrained CLIP weights could not be loaded (e.g. offline)."""


def vocabulary(dataset: str) -> list[str]:
    """The concept names shipped for `dataset` (lthray/concepts/DATASET.txt)."""
    path = VOCAB_DIR / f"{dataset}.txt"
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def bank_name(model: str, pretrained: str) -> str:
    return f"{model}/{pretrained or 'random'}"


def load_clip(model_name: str, pretrained: str) -> tuple[nn.Module, object]:
    """(open_clip model, tokenizer). pretrained='' gives a seeded random init of the same code path."""
    import open_clip

    open_clip.add_model_config(CLIP_CONFIGS)  # lthray-tiny-clip: a small config for offline runs and tests
    if pretrained:
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained, require_pretrained=True)
        except Exception as e:  # hub unreachable, unknown tag, ...
            raise ConceptBankUnavailable(
                f"CLIP weights {model_name}/{pretrained} could not be loaded ({type(e).__name__}: {e}). "
                "Run once with a network (open_clip caches them), or set concepts.clip_pretrained='' for a "
                "random concept bank (checks the pipeline only: random concepts mean nothing)."
            ) from e
    else:
        import logging

        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # open_clip warns "initialized randomly": here that is the point
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                model = open_clip.create_model(model_name, pretrained=None)
        finally:
            root.setLevel(level)
    return model.eval(), open_clip.get_tokenizer(model_name)


@torch.no_grad()
def clip_similarities(model: nn.Module, tokenizer, concepts: list[str], images: torch.Tensor,
                      batch: int = 256) -> torch.Tensor:
    """Cosine similarity of each image ([0,1] NCHW) with each concept text: (N, n_concepts)."""
    text = model.encode_text(tokenizer(concepts))
    text = F.normalize(text.float(), dim=-1)
    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = cfg.get("size", model.visual.image_size)
    size = size if isinstance(size, int) else size[0]
    mean = torch.tensor(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", (0.26862954, 0.26130258, 0.27577711))).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch].float().cpu()
        x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
        emb = F.normalize(model.encode_image((x - mean) / std).float(), dim=-1)
        out.append(emb @ text.T)
    return torch.cat(out)


@dataclass
class Bank:
    name: str
    concepts: list[str]
    train_sim: torch.Tensor  # (N_images, n_concepts): scores of the bank's training images
    train_idx: torch.Tensor | None = None  # which training images (None: all, in order)


_BANKS: dict[tuple[str, str, str, str], Bank] = {}  # per process: trials in one worker share a bank


def concept_bank(data: Data, model_name: str, pretrained: str) -> Bank:
    """CLIP similarities of `data`'s training images with its concepts (cached on disk and in memory).

    Takes the trial's own Data: the images are needed only on a disk-cache miss, and reloading the
    dataset here would hold a second copy of it (600 MB for CIFAR-10) for the rest of the process.
    """
    dataset = data.spec.name
    key = (dataset, model_name, pretrained, str(cache_dir()))
    if key in _BANKS:
        return _BANKS[key]
    concepts = vocabulary(dataset)
    name = bank_name(model_name, pretrained)
    path = cache_dir() / "clip" / f"{dataset}__{model_name}__{pretrained or 'random'}.pt"
    def saved() -> torch.Tensor | None:
        s = torch.load(path, map_location="cpu", weights_only=True) if path.exists() else None
        return s["train_sim"] if s is not None and s["concepts"] == concepts else None

    sim = saved()
    if sim is None:
        with exclusive(path):  # concurrent trials of a node: one builds the bank, the others wait for it
            sim = saved()
            if sim is None:
                images = (data.train_x.cpu() * data.std + data.mean).clamp(0, 1)
                model, tok = load_clip(model_name, pretrained)
                sim = clip_similarities(model, tok, concepts, images)
                atomic_torch_save({"concepts": concepts, "train_sim": sim}, path)
    _BANKS[key] = Bank(name, concepts, sim)
    return _BANKS[key]


def _std(a: torch.Tensor) -> torch.Tensor:
    return (a - a.mean(0, keepdim=True)) / (a.std(0, keepdim=True) + 1e-6)


def cos3_loss(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """-mean over concepts of cos^3 similarity between columns (LF-CBM's objective)."""
    t, p = _std(target) ** 3, _std(pred) ** 3
    return -F.cosine_similarity(t, p, dim=0).mean()


@dataclass
class PCBM:
    """Projection (features -> concepts) and sparse concept -> class layer of one backbone."""

    feat_mean: torch.Tensor
    feat_std: torch.Tensor
    proj: torch.Tensor  # (n_concepts, d)
    act_mean: torch.Tensor
    act_std: torch.Tensor
    coef: torch.Tensor  # (n_classes, n_concepts)
    intercept: torch.Tensor

    def concepts_of(self, feats: torch.Tensor) -> torch.Tensor:
        """Standardised concept activations of backbone features (differentiable)."""
        a = ((feats - self.feat_mean.to(feats)) / self.feat_std.to(feats)) @ self.proj.to(feats).T
        return (a - self.act_mean.to(feats)) / self.act_std.to(feats)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        return self.concepts_of(feats) @ self.coef.to(feats).T + self.intercept.to(feats)

    def top_concepts(self, k: int) -> np.ndarray:
        """(n_classes, k) indices of each class's highest-weighted concepts."""
        return np.argsort(-self.coef.numpy(), axis=1, kind="stable")[:, :k]

    def to_state(self) -> dict[str, torch.Tensor]:
        return dict(self.__dict__)


def fit_pcbm(train_feats: torch.Tensor, train_sim: torch.Tensor, train_y: torch.Tensor, *, steps: int,
             C: float, l1_ratio: float, seed: int) -> PCBM:
    """Fit the LF-CBM projection (cos^3, Adam) and the elastic-net concept -> class layer."""
    from sklearn.linear_model import LogisticRegression

    f = train_feats.cpu()  # the backbone's float type: float32, or float64 for a reproducibility check
    mu, sd = f.mean(0), f.std(0) + 1e-6
    fs = (f - mu) / sd
    g = torch.Generator().manual_seed(seed)
    proj = (torch.randn(train_sim.shape[1], fs.shape[1], generator=g).to(f.dtype) / fs.shape[1] ** 0.5
            ).requires_grad_()
    opt = torch.optim.Adam([proj], lr=1e-2)
    target = train_sim.to(f.dtype)
    for _ in range(steps):  # full batch: a few thousand images x ~64 features is tiny
        opt.zero_grad(set_to_none=True)
        loss = cos3_loss(target, fs @ proj.T)
        loss.backward()
        opt.step()
    proj = proj.detach()
    acts = fs @ proj.T
    amu, asd = acts.mean(0), acts.std(0) + 1e-6
    z = ((acts - amu) / asd).numpy()
    clf = LogisticRegression(C=C, l1_ratio=l1_ratio, solver="saga", max_iter=300, tol=1e-3, random_state=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # saga at tol 1e-3 is plenty for a ranking
        clf.fit(z, train_y.cpu().numpy())
    return PCBM(mu, sd, proj, amu, asd, torch.tensor(clf.coef_, dtype=f.dtype),
                torch.tensor(clf.intercept_, dtype=f.dtype))


@torch.no_grad()
def features(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """Penultimate features of `model` on x, in eval mode (mode restored).

    Batches of 256 keep activations cache-sized: ~2x faster on CPU than batches of 1000 (measured)."""
    with eval_mode(model):
        out = torch.cat([model.features(x[i : i + batch]) for i in range(0, len(x), batch)])
    return out if out.dtype == torch.float64 else out.float()


def topk_overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over classes of |top-k(a) & top-k(b)| / k for two (classes, k) index arrays."""
    k = a.shape[1]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a.tolist(), b.tolist(), strict=True)]))


def weight_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman correlation of two concept -> class weight matrices (flattened); 0 if one is constant."""
    return float(spearman(a.flatten().numpy()[None], b.flatten().numpy()[None])[0])
