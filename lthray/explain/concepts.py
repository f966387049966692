"""Post-hoc concept bottleneck models (PCBM, Yuksekgonul et al. 2023) on each level's backbone.

1. Concept bank (open_clip): text embeddings of a shipped concept vocabulary, and CLIP image embeddings
   of the dataset, give CLIP image-concept similarities S (images x concepts). They do not change with
   pruning, so they are computed once per (dataset, CLIP model) and cached on disk.
2. The pruned backbone is not CLIP, so its penultimate features are mapped to concepts the way
   Label-free CBM does (Oikarinen et al. 2023): a linear projection trained so that, concept by concept,
   its activations over the images match S under the cos^3 similarity. We use this rather than CAVs
   because CAVs need images labelled with each concept, which neither digits nor CIFAR-10 have.
   As LF-CBM's train_cbm.py does (interpretability_cutoff, 0.45), the projection is fitted on part of the
   bank's images and a concept is kept only if its cos^3 similarity on the held-out rest exceeds the
   cutoff: a concept the backbone's features cannot predict is not one the bottleneck can speak of.
   Where we differ: a fixed number of full-batch Adam steps rather than LF-CBM's early stopping, and the
   held-out images are a fifth of the bank's (LF-CBM uses the dataset's validation split).
3. A sparse concept -> class layer: elastic-net logistic regression (scikit-learn).

The projection and the kept concepts are fitted once, on the dense backbone, and held fixed: a pruned
level's features go through the dense projection and only the concept -> class layer is refitted, so
levels differ by the backbone alone. Its top-k concepts are compared with the dense PCBM's over
`refits` bootstrap refits of that layer (`refit_agreement`), which gives the measure its range: the
dense backbone itself refitted is the top of it (the refit floor), a randomly initialised backbone
through the same projection the bottom.
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


def vocabulary_lines(path: Path) -> list[str]:
    """The non-empty, non-comment lines of a vocabulary file."""
    lines = [ln.strip() for ln in Path(path).expanduser().read_text().splitlines()]
    return [ln for ln in lines if ln and not ln.startswith("#")]


def vocabulary(dataset: str, path: str = "") -> list[str]:
    """Concept names: one per line of `path` (concepts.vocabulary), else the list shipped for `dataset`
    (lthray/concepts/DATASET.txt)."""
    return vocabulary_lines(Path(path) if path else VOCAB_DIR / f"{dataset}.txt")


def bank_name(model: str, pretrained: str) -> str:
    return f"{model}/{pretrained or 'random'}"


def load_clip(model_name: str, pretrained: str) -> tuple[nn.Module, object]:
    """(open_clip model, tokenizer). pretrained='' gives a seeded random init of the same code path."""
    try:
        import open_clip
    except ImportError:
        raise ConceptBankUnavailable("concepts.source=clip needs open_clip: pip install 'lthray[clip]' (or set "
                                     "concepts.source=imagenet, the offline source)") from None

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


def fidelity(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """Per concept, the cos^3 similarity of predicted and target scores over images (LF-CBM's
    cos_similarity_cubed_single): how well a backbone's projected features predict that concept."""
    t, p = _std(target) ** 3, _std(pred) ** 3
    return F.cosine_similarity(t, p, dim=0)


@dataclass
class PCBM:
    """Projection (features -> the kept concepts) and sparse concept -> class layer of one backbone. The
    concept axis of proj, coef and concepts_of is the kept concepts', in `kept`'s order."""

    feat_mean: torch.Tensor
    feat_std: torch.Tensor
    proj: torch.Tensor  # (n_kept, d)
    act_mean: torch.Tensor
    act_std: torch.Tensor
    coef: torch.Tensor  # (n_classes, n_kept)
    intercept: torch.Tensor
    kept: torch.Tensor  # (n_kept,) the vocabulary index of each kept concept

    def concepts_of(self, feats: torch.Tensor) -> torch.Tensor:
        """Standardised concept activations of backbone features (differentiable)."""
        a = ((feats - self.feat_mean.to(feats)) / self.feat_std.to(feats)) @ self.proj.to(feats).T
        return (a - self.act_mean.to(feats)) / self.act_std.to(feats)

    def logits(self, feats: torch.Tensor) -> torch.Tensor:
        return self.concepts_of(feats) @ self.coef.to(feats).T + self.intercept.to(feats)

    def top_concepts(self, k: int) -> np.ndarray:
        """(n_classes, k) positions (among the kept concepts) of each class's highest-weighted concepts."""
        return np.argsort(-self.coef.numpy(), axis=1, kind="stable")[:, :k]

    def names(self, vocabulary: list[str], k: int) -> list[list[str]]:
        """Per class, the names of its top-k concepts."""
        return [[vocabulary[int(self.kept[j])] for j in row] for row in self.top_concepts(k).tolist()]

    def to_state(self) -> dict[str, torch.Tensor]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Projection:
    """The LF-CBM projection of one backbone's standardised features, restricted to the concepts that pass
    the fidelity cutoff."""

    proj: torch.Tensor  # (n_kept, d)
    kept: torch.Tensor  # (n_kept,) vocabulary indices
    fidelity: torch.Tensor  # (n_concepts,) held-out cos^3 similarity of every concept


HELD_OUT = 0.2  # the share of the bank's images the fidelity cutoff is measured on


def fit_projection(feats: torch.Tensor, sim: torch.Tensor, *, steps: int, seed: int, cutoff: float) -> Projection:
    """The cos^3 projection (full-batch Adam) fitted on 80% of the images; the concepts whose held-out
    fidelity exceeds `cutoff` are kept (LF-CBM's interpretability cutoff)."""
    f = feats.cpu()  # the backbone's float type: float32, or float64 for a reproducibility check
    mu, sd = f.mean(0), f.std(0) + 1e-6
    fs, target = (f - mu) / sd, sim.to(f.dtype).cpu()
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(fs), generator=g)
    fit, held = order[: len(fs) - int(HELD_OUT * len(fs))], order[len(fs) - int(HELD_OUT * len(fs)):]
    proj = (torch.randn(target.shape[1], fs.shape[1], generator=g).to(f.dtype) / fs.shape[1] ** 0.5).requires_grad_()
    opt = torch.optim.Adam([proj], lr=1e-2)
    for _ in range(steps):  # full batch: a few thousand images x ~64 features is tiny
        opt.zero_grad(set_to_none=True)
        loss = cos3_loss(target[fit], fs[fit] @ proj.T)
        loss.backward()
        opt.step()
    proj = proj.detach()
    with torch.no_grad():
        fid = fidelity(target[held], fs[held] @ proj.T)
    kept = torch.nonzero(fid > cutoff).flatten()
    return Projection(proj[kept], kept, fid)


def fit_head(feats: torch.Tensor, proj: torch.Tensor, kept: torch.Tensor, y: torch.Tensor, *, C: float,
             l1_ratio: float, seed: int) -> PCBM:
    """The elastic-net concept -> class layer of a backbone whose features (standardised with their own
    statistics) go through the projection `proj` (another backbone's, held fixed)."""
    from sklearn.linear_model import LogisticRegression

    f = feats.cpu()
    mu, sd = f.mean(0), f.std(0) + 1e-6
    acts = ((f - mu) / sd) @ proj.to(f).T
    amu, asd = acts.mean(0), acts.std(0) + 1e-6
    z = ((acts - amu) / asd).numpy()
    clf = LogisticRegression(C=C, l1_ratio=l1_ratio, solver="saga", max_iter=300, tol=1e-3, random_state=seed)
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # saga at tol 1e-3 is plenty for a ranking
        clf.fit(z, y.cpu().numpy())
    return PCBM(mu, sd, proj.to(f), amu, asd, torch.tensor(clf.coef_, dtype=f.dtype),
                torch.tensor(clf.intercept_, dtype=f.dtype), kept)


def fit_pcbm(train_feats: torch.Tensor, train_sim: torch.Tensor, train_y: torch.Tensor, *, steps: int,
             C: float, l1_ratio: float, seed: int, cutoff: float = -1.0) -> PCBM | None:
    """A backbone's own PCBM: its projection (keeping the concepts above `cutoff`; -1 keeps all) and its
    concept -> class layer. None when no concept passes the cutoff."""
    p = fit_projection(train_feats, train_sim, steps=steps, seed=seed, cutoff=cutoff)
    if len(p.kept) == 0:
        return None
    return fit_head(train_feats, p.proj, p.kept, train_y, C=C, l1_ratio=l1_ratio, seed=seed)


def refit_agreement(feats: torch.Tensor, y: torch.Tensor, ref: PCBM, *, refits: int, k: int, C: float,
                    l1_ratio: float, seed: int) -> tuple[float, float]:
    """Mean over `refits` bootstrap refits of the concept -> class layer on `feats` (through `ref`'s
    projection) of the top-k overlap and the weight Spearman with `ref`: the concept measure of a backbone
    against the reference PCBM. Refit r resamples the images with seed + r, whatever the backbone, so two
    backbones' refits are paired."""
    ref_top, overlaps, rhos = ref.top_concepts(k), [], []
    for r in range(refits):
        boot = torch.randint(len(feats), (len(feats),), generator=torch.Generator().manual_seed(seed + r))
        head = fit_head(feats.cpu()[boot], ref.proj, ref.kept, y.cpu()[boot], C=C, l1_ratio=l1_ratio, seed=seed + r)
        overlaps.append(topk_overlap(head.top_concepts(k), ref_top))
        rhos.append(weight_spearman(head.coef, ref.coef))
    return float(np.mean(overlaps)), float(np.mean(rhos))


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
