"""A trial's state between levels and its checkpoints: what a trial needs to continue after its last
finished level, written after every level as STATE (the one before it kept as PREVIOUS), in lthray's one
sealed format (`storage.seal`). A corrupt STATE costs one level, not the trial; a missing or corrupt mask
file of a finished level sends the trial back to recompute that level (its rows are never written twice).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lthray import mask_files, results, storage
from lthray.config import TrialConfig, run_id

STATE = "state.pt"
PREVIOUS = "state.prev.pt"  # the checkpoint before the last: a corrupt STATE costs one level, not the trial
MAGIC = b"lthray-state-v1\n"
Weights = dict[str, torch.Tensor]
_LEGACY_STATE = {"start": "began_from"}  # state.pt keys renamed since (old checkpoints still load)


@dataclass
class TrialState:
    """What a trial needs to continue after its last finished level (saved as plain tensors). The rows
    themselves live in the results folder only."""

    level: int = -1  # last finished level
    mask: dict[str, torch.Tensor] = field(default_factory=dict)
    weights: Weights = field(default_factory=dict)  # trained weights of `level` (the lineage)
    rewind: Weights = field(default_factory=dict)  # weights + BN buffers after k steps
    dense_maps: torch.Tensor | None = None  # level 0's Grad-CAM maps: the reference for every level
    dense_lrp: torch.Tensor | None = None  # level 0's LRP maps (explain.lrp): LRP's reference
    dense_occlusion: torch.Tensor | None = None  # level 0's occlusion maps (explain.occlusion): their reference
    guide_maps: torch.Tensor | None = None  # level 0's maps on the guide (training) images
    teacher_logits: torch.Tensor | None = None  # level 0's logits on the training images (imp_kd's teacher)
    began_from: Weights = field(default_factory=dict)  # weights when `level`'s training began
    pcbm: dict[str, torch.Tensor] = field(default_factory=dict)  # PCBM of `level`'s backbone
    dense_pcbm: dict[str, torch.Tensor] = field(default_factory=dict)  # PCBM of the dense backbone
    dense_log_probs: torch.Tensor | None = None  # level 0's test-set log-softmax: function change's reference
    diverged: bool = False

    def finished(self, levels: int) -> bool:
        return results.trial_finished(levels, set(range(self.level + 1)), self.diverged)

    def save(self, path: Path) -> None:
        """Write the checkpoint atomically with a checksum; the one it replaces becomes PREVIOUS."""
        payload = storage.seal(MAGIC, dict(self.__dict__))
        if path.exists():
            os.replace(path, path.with_name(PREVIOUS))
        storage.atomic_write(path, lambda fh: fh.write(payload))

    @classmethod
    def load(cls, path: Path) -> TrialState:
        """The checkpoint at `path`; CorruptState naming it when it is truncated, altered or not one."""
        data = path.read_bytes()
        try:  # legacy: written before checksums (no magic), torch's own zip checks only
            raw = storage.unseal(data, MAGIC, legacy=True)
        except storage.Unsealed as e:
            raise CorruptState(f"{path}: {e}") from None
        raw = {_LEGACY_STATE.get(k, k): v for k, v in raw.items() if k != "rows"}  # rows: results folder
        return cls(**raw)


class CorruptState(ValueError):
    """A checkpoint that cannot be trusted: truncated, altered, or not a checkpoint."""


def resume_state(workdir: Path, say: Callable[[str], None]) -> TrialState:
    """The newest readable checkpoint of `workdir` (STATE, else PREVIOUS, else a fresh start), saying in
    one line which unreadable file it passed over and which level is recomputed."""
    for name in (STATE, PREVIOUS):
        path = workdir / name
        if not path.exists():
            continue
        try:
            state = TrialState.load(path)
        except CorruptState as e:
            say(f"lthray: {e}; passing over it")
            continue
        if name == PREVIOUS:
            say(f"lthray: continuing from {path} (level {state.level}): level {state.level + 1} is recomputed")
        return state
    if (workdir / STATE).exists() or (workdir / PREVIOUS).exists():
        say(f"lthray: no readable checkpoint in {workdir}: the trial restarts from level 0 (its finished rows "
            "stay, and are not written twice)")
    return TrialState()


def last_level(path: Path) -> int:
    """The last finished level a checkpoint records (-1 without one, or an unreadable one): a level is
    finished once its checkpoint is written, which the driver does after the level's mask file and row."""
    try:
        return TrialState.load(path).level if path.exists() else -1
    except CorruptState:
        return -1


def check_masks(cfg: TrialConfig, state: TrialState, workdir: Path, results_dir: str | Path,
                say: Callable[[str], None]) -> TrialState:
    """The state to continue from, given the mask files of the finished levels: a missing or unreadable
    one is named and set aside, and its level is recomputed (from PREVIOUS when it is the last level,
    else from level 0); rows that exist stay and are never written twice."""
    rid = run_id(cfg)
    for level in range(state.level + 1):
        why = mask_files.problem(results_dir, rid, level)
        if why is None:
            continue
        path = mask_files.path_of(results_dir, rid, level)
        if why != "is missing":
            storage.set_aside(path)
        try:
            prev = TrialState.load(workdir / PREVIOUS) if level == state.level and (workdir / PREVIOUS).exists() \
                else None
        except CorruptState:
            prev = None
        start = prev if prev is not None and prev.level == level - 1 else TrialState()
        say(f"lthray: mask file {path} {why}; recomputing from level {start.level + 1}")
        return start
    return state
