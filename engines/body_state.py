"""Per-body SMPL parameters as the fitter and the tracker pass them around, and the pure
functions on them: the turned and front/back-flipped starts of a cold start's other hypotheses
and the per-frame velocity used to extrapolate a warm start.

Conventions (docs/conventions.md): axis-angle rotations in SMPL joint order; translation in the
OpenCV camera frame, metres. A :class:`BodyState` is immutable; every function returns a new one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from engines.mirror import MIRROR_JOINTS
from engines.rotations import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = ["BodyState", "extrapolate", "flip_front_back", "turn_about_vertical", "velocity"]


@dataclass
class BodyState:
    """SMPL parameters of B bodies (camera frame, docs/conventions.md)."""

    global_orient: torch.Tensor  # [B, 3]
    body_pose: torch.Tensor  # [B, 69]
    betas: torch.Tensor  # [B, 10]
    transl: torch.Tensor  # [B, 3]

    def __post_init__(self) -> None:
        if not isinstance(self.global_orient, torch.Tensor) or self.global_orient.dim() != 2:
            raise ValueError("global_orient must be a tensor [B, 3]")
        b = self.global_orient.shape[0]
        for name, n in (("global_orient", 3), ("body_pose", 69), ("transl", 3)):
            t = getattr(self, name)
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (b, n):
                raise ValueError(
                    f"{name} must be [B, {n}] = [{b}, {n}], got "
                    f"{tuple(t.shape) if isinstance(t, torch.Tensor) else t}"
                )
        if (
            not isinstance(self.betas, torch.Tensor)
            or self.betas.dim() != 2
            or (self.betas.shape[0] != b)
        ):
            raise ValueError(f"betas must be [B, N] with B = {b}")

    @property
    def batch(self) -> int:
        return self.global_orient.shape[0]

    def detach(self) -> BodyState:
        return BodyState(*(t.detach().clone() for t in self.as_tuple()))

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        return (self.global_orient, self.body_pose, self.betas, self.transl)

    def select(self, index) -> BodyState:
        return BodyState(*(t[index] for t in self.as_tuple()))

    @staticmethod
    def cat(states: list[BodyState]) -> BodyState:
        return BodyState(*(torch.cat(ts) for ts in zip(*(s.as_tuple() for s in states))))

    @staticmethod
    def where(cond: torch.Tensor, a: BodyState, b: BodyState) -> BodyState:  # cond: [B] bool
        return BodyState(
            *(torch.where(cond[:, None], x, y) for x, y in zip(a.as_tuple(), b.as_tuple()))
        )

    @staticmethod
    def choose(states: list[BodyState], index: torch.Tensor) -> BodyState:  # index: [B] long
        """Body ``b`` of ``states[index[b]]`` for every ``b`` (all states have B bodies)."""
        b = states[0].batch
        if index.shape != (b,) or any(s.batch != b for s in states):
            raise ValueError(f"choose needs states of B = {b} bodies and index [B]")
        rows = torch.arange(b)
        return BodyState(
            *(torch.stack(ts)[index, rows] for ts in zip(*(s.as_tuple() for s in states)))
        )


def turn_about_vertical(
    state: BodyState,
    pelvis_rest: torch.Tensor,  # [B, 3] rest pelvis, body frame
    degrees: float,
) -> BodyState:
    """Turn each body by ``degrees`` about its own vertical axis (body-frame y, right-handed),
    keeping its body pose. The rotation is about the rest pelvis, so the pelvis stays where it
    was in the camera frame."""
    R = axis_angle_to_matrix(state.global_orient)  # [B, 3, 3]
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    Ry = state.global_orient.new_tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    R2 = R @ Ry
    p = pelvis_rest[..., None]
    transl = state.transl + (R @ p - R2 @ p)[..., 0]
    return BodyState(matrix_to_axis_angle(R2), state.body_pose.clone(), state.betas.clone(), transl)


def flip_front_back(state: BodyState, pelvis_rest: torch.Tensor) -> BodyState:  # [B, 3]
    """Turn each body 180 degrees about its own vertical axis, then mirror left/right.

    The rotation is about the rest pelvis (``pelvis_rest [B, 3]``, body frame), so the pelvis stays
    where it was in the camera frame. Mirroring swaps left/right joints and negates the y and z
    components of every axis-angle.
    """
    turned = turn_about_vertical(state, pelvis_rest, 180.0)
    full = torch.cat([turned.global_orient, state.body_pose], dim=1).reshape(-1, 24, 3)
    mirrored = full[:, list(MIRROR_JOINTS)] * full.new_tensor([1.0, -1.0, -1.0])
    # the global orientation is not mirrored (it is the body's facing, already turned)
    body_pose = mirrored[:, 1:].reshape(-1, 69)
    return BodyState(turned.global_orient, body_pose, state.betas.clone(), turned.transl)


def _compose_aa(aa: torch.Tensor, delta: torch.Tensor, a: float) -> torch.Tensor:  # [B, 3] x2
    """Apply a fraction ``a`` of a rotation increment (axis-angle) to ``aa``, on rotations."""
    R = axis_angle_to_matrix(aa)
    D = axis_angle_to_matrix(delta * a)
    return matrix_to_axis_angle(D @ R)


def extrapolate(state: BodyState, velocity: BodyState, a: float) -> BodyState:
    """``state`` moved on by a fraction ``a`` of ``velocity`` (:func:`velocity`'s per-frame
    change; the global orientation composed as a rotation, betas unchanged)."""
    return BodyState(
        _compose_aa(state.global_orient, velocity.global_orient, a),
        state.body_pose + a * velocity.body_pose,
        state.betas,
        state.transl + a * velocity.transl,
    )


def velocity(prev: BodyState, cur: BodyState) -> BodyState:
    """Per-frame change from ``prev`` to ``cur`` (global orientation as a rotation increment)."""
    R0 = axis_angle_to_matrix(prev.global_orient)
    R1 = axis_angle_to_matrix(cur.global_orient)
    dgo = matrix_to_axis_angle(R1 @ R0.transpose(-1, -2))
    return BodyState(
        dgo, cur.body_pose - prev.body_pose, torch.zeros_like(cur.betas), cur.transl - prev.transl
    )
