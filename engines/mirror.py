"""Left/right mirroring of the regression head's outputs, and flip test-time averaging.

A crop flipped left to right (pixel column ``u -> S - 1 - u``, about the crop centre
``c0 = (S - 1) / 2``) shows the mirror image of the body. In SMPL's body frame (docs/conventions.md:
left = +x) the mirror is the reflection ``M = diag(-1, 1, 1)``: joint ``j`` takes the place of its
mirror joint, and each joint's local rotation ``R`` becomes ``M R M`` (in axis-angle: ``(x, y, z)
-> (x, -y, -z)``, as ``engines.motion.sampler.mirror_body_pose``). The weak-perspective camera
``(s, tx, ty)`` is relative to ``c0``, so its mirror is ``(s, -tx, ty)``.

:func:`flip_average` combines the network's outputs on a crop and on its flipped copy: the body
pose is the chordal mean of the two estimates of every joint's rotation (the first one and the
mirror of the second), betas and camera are averaged, and the global orientation stays the
first's. The global orientation's mirror is only exact for a crop centred on the camera's
principal point (crops share the frame camera's axes, so most are not), and averaging it made
MPJPE worse on the val split, while averaging the articulation lowered PA-MPJPE by 1.5-2.4%
(README "Training and evaluation"). Off by default in the pipeline (two network passes per
person): ``FeaturesParams.regression_flip``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from engines.rotations import matrix_to_rot6d, rot6d_to_matrix

__all__ = [
    "MIRROR_JOINTS",
    "chordal_mean",
    "flip_average",
    "flip_crops",
    "mirror_cam",
    "mirror_rotmats",
    "run_flip_averaged",
]

# SMPL joint -> its mirror joint (left/right swapped; docs/conventions.md joint table)
MIRROR_JOINTS = (0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20,
                 23, 22)  # fmt: skip


def flip_crops(crops: np.ndarray) -> np.ndarray:  # [B, S, S, 3] -> [B, S, S, 3]
    """Crops flipped left to right (a contiguous copy)."""
    crops = np.asarray(crops)
    if crops.ndim != 4:
        raise ValueError(f"crops: expected [B, S, S, C], got {crops.shape}")
    return np.ascontiguousarray(crops[:, :, ::-1])


def mirror_rotmats(R: torch.Tensor) -> torch.Tensor:  # [B, 24, 3, 3] -> [B, 24, 3, 3]
    """Per-joint local rotations of the mirrored body: joints swapped left/right, ``M R M``."""
    if R.dim() != 4 or R.shape[1:] != (24, 3, 3):
        raise ValueError(f"R: expected [B, 24, 3, 3], got {tuple(R.shape)}")
    m = R.new_tensor([-1.0, 1.0, 1.0])
    # (M R M)_ij = m_i R_ij m_j
    return R[:, list(MIRROR_JOINTS)] * m[:, None] * m[None, :]


def mirror_cam(cam: torch.Tensor) -> torch.Tensor:  # [B, 3] (s, tx, ty) -> [B, 3]
    """Weak-perspective camera of the crop flipped about its centre: ``(s, -tx, ty)``."""
    if cam.dim() != 2 or cam.shape[1] != 3:
        raise ValueError(f"cam: expected [B, 3], got {tuple(cam.shape)}")
    return cam * cam.new_tensor([1.0, -1.0, 1.0])


def chordal_mean(R: torch.Tensor) -> torch.Tensor:  # [N, ..., 3, 3] -> [..., 3, 3]
    """Chordal L2 mean of N rotations: the rotation nearest (Frobenius) to their average matrix,
    ``U diag(1, 1, det(U V^T)) V^T`` from the SVD ``U S V^T`` of the average."""
    if R.dim() < 3 or R.shape[-2:] != (3, 3):
        raise ValueError(f"R: expected [N, ..., 3, 3], got {tuple(R.shape)}")
    U, _, Vh = torch.linalg.svd(R.mean(dim=0))
    d = torch.det(U @ Vh)
    fix = torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1)
    return (U * fix[..., None, :]) @ Vh


def flip_average(
    out: dict[str, torch.Tensor],  # regression of the crops: pose6d [B, 24, 6], betas, cam
    flipped: dict[str, torch.Tensor],  # ... of the same crops flipped left to right
) -> dict[str, torch.Tensor]:  # -> pose6d [B, 24, 6], betas [B, 10], cam [B, 3]
    """Flip test-time average of the regression head (module docstring); new tensors."""
    for name, d in (("out", out), ("flipped", flipped)):
        missing = {"pose6d", "betas", "cam"} - set(d)
        if missing:
            raise ValueError(f"{name}: missing {sorted(missing)}")
    if out["pose6d"].shape != flipped["pose6d"].shape:
        raise ValueError(
            f"pose6d shapes differ: {tuple(out['pose6d'].shape)} vs "
            f"{tuple(flipped['pose6d'].shape)}"
        )
    R = rot6d_to_matrix(out["pose6d"].float())  # [B, 24, 3, 3]
    Rm = mirror_rotmats(rot6d_to_matrix(flipped["pose6d"].float()))
    body = chordal_mean(torch.stack([R[:, 1:], Rm[:, 1:]]))  # [B, 23, 3, 3]
    pose = torch.cat([R[:, :1], body], dim=1)
    return {
        "pose6d": matrix_to_rot6d(pose),
        "betas": 0.5 * (out["betas"].float() + flipped["betas"].float()),
        "cam": 0.5 * (out["cam"].float() + mirror_cam(flipped["cam"].float())),
    }


def run_flip_averaged(
    run: Callable[[np.ndarray], dict[str, torch.Tensor]],  # crops [N, S, S, 3] -> outputs [N, ...]
    crops: np.ndarray,  # [B, S, S, 3]
) -> dict[str, torch.Tensor]:
    """``run`` on the crops and their flips in one call; the crops' outputs with the regression
    (pose6d, betas, cam) replaced by :func:`flip_average` (the maps stay the unflipped crops')."""
    n = len(crops)
    both = run(np.concatenate([crops, flip_crops(crops)]))
    out = {k: v[:n] for k, v in both.items()}
    out.update(flip_average(out, {k: v[n:] for k, v in both.items()}))
    return out
