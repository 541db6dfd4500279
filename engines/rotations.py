"""Rotation conversions (docs/conventions.md: axis-angle, column vectors, 6D = two columns).

All functions are batched over leading dimensions, differentiable, and work in float32 or float64.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_quaternion",
    "matrix_to_rot6d",
    "quaternion_to_matrix",
    "rot6d_to_matrix",
    "skew",
]

_EPS = 1e-8


def skew(v: torch.Tensor) -> torch.Tensor:  # v: [..., 3] -> [..., 3, 3]
    """Cross-product matrix: ``skew(a) @ b == cross(a, b)``."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:  # aa: [..., 3] -> [..., 3, 3]
    """Rodrigues' formula, with a Taylor expansion near zero so gradients stay finite at rest."""
    theta2 = (aa * aa).sum(-1, keepdim=True)  # [..., 1]
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    # A = sin(t)/t, B = (1 - cos(t))/t^2, series near 0: A ~ 1 - t^2/6, B ~ 1/2 - t^2/24
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2_safe)
    k = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(k.shape)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def matrix_to_quaternion(
    R: torch.Tensor,
) -> torch.Tensor:  # R: [..., 3, 3] -> [..., 4] (w, x, y, z)
    """Rotation matrix to unit quaternion ``(w, x, y, z)`` with ``w >= 0`` (numerically robust)."""
    m = R
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four candidate computations; pick the best-conditioned per element.
    q_abs = torch.sqrt(
        torch.clamp(
            torch.stack(
                [
                    1 + m00 + m11 + m22,
                    1 + m00 - m11 - m22,
                    1 - m00 + m11 - m22,
                    1 - m00 - m11 + m22,
                ],
                dim=-1,
            ),
            min=_EPS,
        )
    )  # [..., 4]
    w_r = torch.stack(
        [
            torch.stack(
                [
                    q_abs[..., 0] ** 2,
                    m[..., 2, 1] - m[..., 1, 2],
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] - m[..., 0, 1],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 2, 1] - m[..., 1, 2],
                    q_abs[..., 1] ** 2,
                    m[..., 1, 0] + m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 0, 2] - m[..., 2, 0],
                    m[..., 1, 0] + m[..., 0, 1],
                    q_abs[..., 2] ** 2,
                    m[..., 2, 1] + m[..., 1, 2],
                ],
                -1,
            ),
            torch.stack(
                [
                    m[..., 1, 0] - m[..., 0, 1],
                    m[..., 0, 2] + m[..., 2, 0],
                    m[..., 2, 1] + m[..., 1, 2],
                    q_abs[..., 3] ** 2,
                ],
                -1,
            ),
        ],
        dim=-2,
    )  # [..., 4, 4]
    cands = w_r / (2.0 * q_abs[..., None].clamp(min=0.1))
    best = q_abs.argmax(dim=-1)  # [...]
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = F.normalize(q, dim=-1)
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(
    q: torch.Tensor,
) -> torch.Tensor:  # q: [..., 4] (w, x, y, z) -> [..., 3, 3]
    q = F.normalize(q, dim=-1)
    w, x, y, z = q.unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(*q.shape[:-1], 3, 3)  # fmt: skip


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:  # R: [..., 3, 3] -> [..., 3]
    """Inverse of :func:`axis_angle_to_matrix`; angle in [0, pi]."""
    q = matrix_to_quaternion(R)
    w, xyz = q[..., :1], q[..., 1:]
    s = xyz.norm(dim=-1, keepdim=True)
    angle = 2 * torch.atan2(s, w)
    small = s < 1e-6
    factor = torch.where(small, 2.0 / w.clamp(min=_EPS), angle / s.clamp(min=_EPS))
    return xyz * factor


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:  # x: [..., 6] -> [..., 3, 3]
    """6D (first two columns, concatenated) to rotation matrix by Gram-Schmidt."""
    a1, a2 = x[..., :3], x[..., 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(R: torch.Tensor) -> torch.Tensor:  # R: [..., 3, 3] -> [..., 6]
    return torch.cat([R[..., :, 0], R[..., :, 1]], dim=-1)
