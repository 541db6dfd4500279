"""Regression-head losses (DESIGN.md s5; weights of the released code, scaled by 60).

All inputs are batched over ``B`` crops. Joints are SMPL's 24 in the crop camera frame (metres);
2D joints are crop pixels; the crop camera is OpenCV pinhole (docs/conventions.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

__all__ = [
    "RegressionWeights",
    "regression_losses",
    "weak_perspective_project",
    "weak_perspective_to_transl",
]


@dataclass(frozen=True)
class RegressionWeights:
    joints3d: float = 300.0
    joints3d_body: float = 300.0
    joints2d: float = 300.0
    pose: float = 60.0
    betas: float = 0.06
    cam_prior: float = 60.0
    parts: float = 60.0

    @classmethod
    def from_dict(cls, d: dict) -> RegressionWeights:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown regression weight(s): {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in d.items()})


def weak_perspective_to_transl(
    cam: torch.Tensor,  # [B, 3] (s, tx, ty), crop coordinates normalised to [-1, 1]
    K: torch.Tensor,  # [B, 3, 3] crop camera
    size: int,  # crop side S, pixels
) -> torch.Tensor:  # -> [B, 3]
    """Camera-frame translation of a weak-perspective estimate (docs/conventions.md).

    ``s, tx, ty`` describe the body relative to the crop's centre ``c0 = (S - 1) / 2``: depth
    ``z = 2 f / (S s)`` and the body origin projecting at ``c0 + f (tx, ty) / z``. A crop
    camera's principal point need not be the crop centre (crops share the frame camera's axes),
    so ``transl = [tx - (cx - c0) z / fx, ty - (cy - c0) z / fy, z]``. ``s`` is clamped > 0.
    """
    s = cam[:, 0].clamp(min=1e-3)
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    c0 = (size - 1) / 2.0
    z = 2.0 * fx / (size * s)
    return torch.stack([cam[:, 1] - (cx - c0) * z / fx, cam[:, 2] - (cy - c0) * z / fy, z], -1)


def weak_perspective_project(
    joints: torch.Tensor,  # [B, J, 3] body frame with transl = 0
    cam: torch.Tensor,  # [B, 3] (s, tx, ty)
) -> torch.Tensor:  # -> [B, J, 2] crop coordinates normalised to [-1, 1] about the crop centre
    """Weak-perspective projection ``s (X + t)``: the crop pixel is ``c0 + S/2 * uv`` with
    ``c0 = (S - 1) / 2``; exact for the body origin under :func:`weak_perspective_to_transl`.
    Bounded in ``s`` (no division), so a bad early camera cannot blow the loss up."""
    return cam[:, None, :1] * (joints[..., :2] + cam[:, None, 1:])


def regression_losses(
    pred_rotmats: torch.Tensor,  # [B, 24, 3, 3]
    pred_betas: torch.Tensor,  # [B, 10]
    pred_cam: torch.Tensor,  # [B, 3]
    pred_joints: torch.Tensor,  # [B, 24, 3] joints of the predicted pose/shape with transl = 0
    gt_rotmats: torch.Tensor,  # [B, 24, 3, 3]
    gt_betas: torch.Tensor,  # [B, 10]
    gt_joints3d: torch.Tensor,  # [B, 24, 3] camera frame
    gt_joints2d: torch.Tensor,  # [B, 24, 2] crop pixels
    K: torch.Tensor,  # [B, 3, 3] crop camera
    size: int,
    weights: RegressionWeights,
    part_logits: torch.Tensor | None = None,  # [B, 25, h, w]
    gt_parts: torch.Tensor | None = None,  # [B, h, w] long, 0 = background
    joints2d_visible: torch.Tensor | None = None,  # [B, 24] bool
    body_joints: torch.Tensor | None = None,  # [B, 24, 3] predicted body pose, true global orient
) -> dict[str, torch.Tensor]:
    """Weighted loss terms (each a scalar); ``total`` is their sum.

    ``body_joints`` (optional) are the joints of the predicted body pose and shape under the
    true global orientation: their root-relative error (``joints3d_body``) teaches the body pose
    without the gradient of a wrong global orientation, which otherwise twists the limbs to
    compensate (PA-MPJPE then gets worse than the mean pose's). ``joints2d`` compares the
    weak-perspective projection of ``pred_joints`` with the crop-normalised ground truth."""
    out: dict[str, torch.Tensor] = {}
    root_p = pred_joints[:, :1]
    root_g = gt_joints3d[:, :1]
    out["joints3d"] = weights.joints3d * F.mse_loss(pred_joints - root_p, gt_joints3d - root_g)
    if body_joints is not None:
        out["joints3d_body"] = weights.joints3d_body * F.mse_loss(
            body_joints - body_joints[:, :1], gt_joints3d - root_g
        )
    uv = weak_perspective_project(pred_joints, pred_cam)
    c0 = (size - 1) / 2.0
    gt_uv = (gt_joints2d - c0) / (size / 2.0)
    err2d = (uv - gt_uv) ** 2  # [B, 24, 2]
    if joints2d_visible is not None:
        err2d = err2d * joints2d_visible[..., None].to(err2d.dtype)
    out["joints2d"] = weights.joints2d * err2d.mean()
    out["pose"] = weights.pose * F.mse_loss(pred_rotmats, gt_rotmats)
    out["betas"] = weights.betas * F.mse_loss(pred_betas, gt_betas)
    out["cam_prior"] = weights.cam_prior * (torch.exp(-10 * pred_cam[:, 0]) ** 2).mean()
    if part_logits is not None and gt_parts is not None:
        out["parts"] = weights.parts * F.cross_entropy(part_logits, gt_parts)
    out["total"] = sum(out.values())
    return out
