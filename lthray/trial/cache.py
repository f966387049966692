"""Content-addressed sharing of finished levels across the trials of a sweep (the cache in front of a
level, `trial.level`): never compute a level twice.

A level is keyed by everything that determines it (`keys`): the data, model, training, explanation and
concept configs and the seed, and for a pruned level the lineage so far (the method's criterion and guide,
guidance weight, lambda_fid, schedule, scope, rewind). Two parts are stored apart, because the reinit
control (like the shuffled control and the retraining arms) shares the first and not the second:

- the *lineage* (`Lineage`): the mask, the weights its training began from, the trained weights the next
  level prunes, and at level 0 the rewind points. Level 0 trains once per (seed, dense training) whatever
  the rewind point: it saves every rewind point the sweep asks for (`rewind_points`). The reinit control
  follows IMP's lineage: its lineage key is IMP's.
- the *measurement* (`Measured`): the row's metric columns and what the next levels read (the dense maps,
  LRP maps, guide maps, PCBMs), keyed by the lineage key plus what changes the measured network or its
  extra columns (the reinit control, the instability analysis).

Keys name configs, not bits: a level is reused wherever its config matches, so on a cluster whose nodes'
kernels round differently a reused level may differ in its last bits from what another node would compute
(the tolerance a resumed trial already has). A trial that (re)trains a lineage itself measures it itself.

An entry is one file written atomically with a sha256 (a kill -9 leaves none or a whole one; a corrupt one
is set aside and recomputed). On a local or shared file system, trials that need one key take its lock:
one computes, the others wait and then reuse. On an object store there is no lock: the first writer wins,
and a trial that computed the same entry meanwhile keeps its own (identical) result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lthray import storage
from lthray.config import TrialConfig, to_flat
from lthray.trial.state import Weights

# bump when what an entry holds, or how a level is computed, changes (2: + the test log-softmax; 3: the PCBM's
# projection fixed from dense, its kept concepts)
VERSION = 3
_MAGIC = b"lthray-shared-v1\n"

# The retraining arms' loss settings (Method.retrain): lambda_fid also trains an ordinary method's lineage.
ARM_KEYS = ("prune.lambda_fid", "prune.kd_weight", "prune.kd_temperature")
# Config sections that determine every level of a trial, measurement included.
_BASE = ("data.", "model.", "train.", "explain.", "concepts.")


def _plain(v: Any) -> Any:
    """numpy scalars and arrays in a row's columns as plain JSON values."""
    return v.tolist() if isinstance(v, np.ndarray | np.generic) else str(v)


def _canon(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:32]


def lineage_key(cfg: TrialConfig, level: int) -> str:
    """What determines level `level`'s mask and trained weights (and level 0's rewind points)."""
    from lthray.methods import METHODS

    flat = to_flat(cfg)
    base = {k: v for k, v in flat.items() if k.startswith(_BASE)}
    parts: dict[str, Any] = {"v": VERSION, "level": level, "seed": cfg.seed, "base": base}
    if level > 0:
        m = METHODS.get(cfg.prune.method)
        # distillation trains only an arm's measured copy, never a lineage; an arm's lineage is IMP's, trained
        # with cross-entropy alone (Method.retrain), so it reads lambda_fid as IMP's 0
        prune = {k: v for k, v in flat.items() if k.startswith("prune.") and k not in ("prune.method", *ARM_KEYS[1:])}
        if m.retrain:
            prune["prune.lambda_fid"] = 0.0
        if cfg.prune.target_density is None:
            # a rate schedule's level L is the same whatever the number of levels after it
            prune.pop("prune.levels", None)
        # the criterion the lineage is pruned by (reinit prunes by IMP's: its lineage is IMP's)
        parts["lineage"] = {**prune, "criterion": [m.base, m.guide, m.at_init, m.iterative]}
    return _canon(parts)


def measured_key(cfg: TrialConfig, level: int) -> str:
    """What determines the row's columns of level `level` besides its lineage: the reinit control measures
    a freshly initialised copy; the instability analysis adds columns (at level 0 from the rewind point)."""
    from lthray.methods import METHODS

    flat = to_flat(cfg)
    m = METHODS.get(cfg.prune.method)
    extra: dict[str, Any] = {"reinit": m.reinit, "shuffle": m.shuffle,
                             "instability": {k: v for k, v in flat.items() if k.startswith("instability.")}}
    if m.retrain and level > 0:  # an arm measures its retrained copy (level 0 is the dense model, IMP's)
        extra["arm"] = {"retrain": m.retrain, **{k: flat[k] for k in ARM_KEYS}}
    if (cfg.instability.enabled or cfg.explain.same_init_floor) and level == 0:  # the second copy starts at k
        extra["rewind_step"] = flat["prune.rewind_step"]
    return _canon({"lineage": lineage_key(cfg, level), **extra})


@dataclass
class Lineage:
    """A level's lineage: what the next level starts from. `rewinds` (level 0): step -> weights."""

    mask: dict[str, torch.Tensor]
    began_from: Weights
    lineage: Weights
    rewinds: dict[int, Weights] = field(default_factory=dict)
    train_steps: int = 0
    diverged: bool = False
    source: str = ""  # the run_id that computed it


@dataclass
class Measured:
    """A level's measurement: its row's metric columns and what later levels read of it."""

    cols: dict[str, Any]
    maps: np.ndarray | None = None  # the probe images' maps (Grad-CAM, LRP) as the measuring trial made them
    lrp: np.ndarray | None = None
    guide_maps: torch.Tensor | None = None
    pcbm: dict[str, torch.Tensor] = field(default_factory=dict)
    log_probs: torch.Tensor | None = None  # level 0: the test set's log-softmax (function change's reference)
    source: str = ""
    teacher_logits: torch.Tensor | None = None  # level 0: the dense logits on the training images (imp_kd's teacher)
    occlusion: np.ndarray | None = None  # occlusion maps of the probe images (explain.occlusion)


# Measured's numpy fields, stored as tensors: an entry is read with torch's weights-only loader (data, never
# code), which refuses numpy arrays, so an array left as one would make every reader recompute the level.
_ARRAYS = ("maps", "lrp", "occlusion")

class LevelCache:
    """The sweep's shared levels under `root` (a local folder or a storage URI): KIND-KEY.pt, each sealed
    (storage.seal). `claim` holds a key's lock while a trial computes it; `get` reads an entry or None;
    `put` publishes one unless it is there (the first writer wins)."""

    def __init__(self, root: str | Path) -> None:
        self.root = str(root).rstrip("/")
        self.local = not storage.is_uri(self.root)

    def _path(self, kind: str, key: str) -> str:
        return f"{self.root}/{kind}-{key}.pt"

    @contextlib.contextmanager
    def claim(self, kind: str, key: str) -> Iterator[None]:
        """Hold the entry's lock while the body runs (local and shared file systems; a no-op on object
        stores, where the first writer wins)."""
        if not self.local:
            yield
            return
        with storage.exclusive(Path(self._path(kind, key))):
            yield

    def get(self, kind: str, key: str) -> Lineage | Measured | None:
        """The entry, or None when absent; a corrupt one is set aside (and so recomputed) with a line saying so."""
        path = self._path(kind, key)
        if not storage.exists(path):
            return None
        try:  # an entry is data (tensors, a JSON string), never code to unpickle
            raw = storage.unseal(storage.read_bytes(path), _MAGIC)
        except storage.Unsealed as e:
            why = "is corrupt (checksum)" if isinstance(e, storage.ChecksumMismatch) else f"is unreadable ({e})"
            aside = storage.set_aside(path)
            print(f"lthray: shared entry {path} {why}; set aside as {aside}, recomputing", flush=True)
            return None
        if kind == "lineage":
            return Lineage(**raw)
        raw["cols"] = json.loads(raw["cols"])
        for k in _ARRAYS:
            raw[k] = raw[k].numpy() if raw.get(k) is not None else None
        return Measured(**raw)

    def put(self, kind: str, key: str, entry: Lineage | Measured) -> None:
        """Publish an entry atomically, unless one is there already (the first writer wins)."""
        path = self._path(kind, key)
        if storage.exists(path):
            return
        raw = dict(entry.__dict__)
        if isinstance(entry, Measured):
            raw["cols"] = json.dumps(entry.cols, default=_plain)
            for k in _ARRAYS:
                raw[k] = torch.from_numpy(np.ascontiguousarray(raw[k])) if raw[k] is not None else None
        assert not any(isinstance(v, np.ndarray) for v in raw.values()), "add Measured's new array field to _ARRAYS"
        storage.write_bytes(path, storage.seal(_MAGIC, raw))


class NoCache:
    """No sharing (`--no-share`, a single trial): every level is computed, nothing is kept. The level loop
    runs the same steps through it as through a LevelCache."""

    @contextlib.contextmanager
    def claim(self, kind: str, key: str) -> Iterator[None]:
        yield

    def get(self, kind: str, key: str) -> None:
        return None

    def put(self, kind: str, key: str, entry: Lineage | Measured) -> None:
        pass
