"""Pose sources for the synthetic data: retargeted motion-capture takes split by take, mirroring.

Takes: ``<mocap_dir>/*.bvh`` are training material (a fixed few of them form the validation
split); ``<mocap_dir>/holdout/*.bvh`` are for evaluation only (split "eval"). BVH reading and
retargeting onto SMPL are ``engines.motion``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "MIRROR_PERM",
    "VAL_TAKES",
    "PoseSequence",
    "TakeBank",
    "default_mocap_dir",
    "mirror_pose",
    "split_takes",
]

#: Training-directory takes held out for validation (one walk, one dance, one salsa).
VAL_TAKES: tuple[str, ...] = ("cmu_07_06.bvh", "cmu_05_15.bvh", "cmu_60_12.bvh")

_PAIRS = ((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23))
MIRROR_PERM: tuple[int, ...] = tuple(
    next((b if j == a else a for a, b in _PAIRS if j in (a, b)), j) for j in range(24)
)


@dataclass
class PoseSequence:
    """SMPL pose sequence in the motion's world frame (y up): global_orient [T, 3], body_pose
    [T, 69], transl [T, 3] (m), fps."""

    name: str
    global_orient: torch.Tensor  # [T, 3]
    body_pose: torch.Tensor  # [T, 69]
    transl: torch.Tensor  # [T, 3]
    fps: float

    def __len__(self) -> int:
        return int(self.global_orient.shape[0])


def default_mocap_dir() -> Path:
    """The CMU takes (``engines.paths.mocap_dir``: ``$NBF_MOCAP_DIR`` or the shared folder)."""
    from engines.paths import mocap_dir

    return mocap_dir()


def split_takes(mocap_dir: Path | str, split: str) -> list[Path]:
    """BVH takes of a split: "train" (training dir minus ``VAL_TAKES``), "val" (``VAL_TAKES``),
    "eval" (``holdout/``)."""
    d = Path(mocap_dir)
    if split == "eval":
        return sorted((d / "holdout").glob("*.bvh"))
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train', 'val' or 'eval', got {split!r}")
    takes = sorted(d.glob("*.bvh"))
    return [p for p in takes if (p.name in VAL_TAKES) == (split == "val")]


def mirror_pose(
    global_orient: torch.Tensor,  # [B, 3]
    body_pose: torch.Tensor,  # [B, 69]
    transl: torch.Tensor,  # [B, 3]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left/right mirror image (reflection x -> -x of the body frame): swap left/right joints,
    axis-angle (a, b, c) -> (a, -b, -c), transl x -> -x."""
    pose = torch.cat([global_orient, body_pose], 1).view(-1, 24, 3)[:, list(MIRROR_PERM)]
    pose = pose * pose.new_tensor([1.0, -1.0, -1.0])
    t = transl * transl.new_tensor([-1.0, 1.0, 1.0])
    return pose[:, 0].contiguous(), pose[:, 1:].reshape(-1, 69).contiguous(), t


def _load_bvh(path: Path) -> PoseSequence:
    from .motion_adapter import load_take

    return load_take(path)


class TakeBank:
    """Lazily loaded retargeted takes of one split."""

    def __init__(self, paths: list[Path], loader=_load_bvh) -> None:
        if not paths:
            raise ValueError("no motion takes for this split (check the mocap directory)")
        self.paths = list(paths)
        self._loader = loader
        self._cache: dict[int, PoseSequence] = {}

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]

    def take(self, i: int) -> PoseSequence:
        if i not in self._cache:
            self._cache[i] = self._loader(self.paths[i])
        return self._cache[i]

    def sample(self, rng: np.random.Generator) -> tuple[int, int]:
        """A (take, frame) pair: takes uniformly, frames uniformly within the take."""
        i = int(rng.integers(len(self)))
        return i, int(rng.integers(len(self.take(i))))
