"""Bridge to ``engines.motion``: a BVH take as a ``poses.PoseSequence`` (SMPL, y-up world)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from engines.body import BodyModel
from engines.motion import retarget_file

from .poses import PoseSequence

__all__ = ["load_take"]


@lru_cache(maxsize=1)
def _rest_joints() -> torch.Tensor:  # [24, 3] mean-shape T-pose joints of the default body
    return BodyModel.default().J_template.double().clone()


def load_take(path: Path | str) -> PoseSequence:
    """Read and retarget one BVH take onto SMPL's 24 joints (engines.motion.retarget_file, with
    the default body's mean-shape rest joints; units and rates from its table of known takes)."""
    m = retarget_file(path, _rest_joints().numpy())
    return PoseSequence(
        name=Path(path).name,
        global_orient=torch.as_tensor(m.global_orient, dtype=torch.float32),
        body_pose=torch.as_tensor(m.body_pose, dtype=torch.float32),
        transl=torch.as_tensor(m.transl, dtype=torch.float32),
        fps=float(m.fps),
    )
