"""One-Euro filtering of published poses (Casiez et al., CHI 2012), per track.

Rotations are filtered as unit quaternions (hemisphere-aligned to the previous output, blended
and renormalised; the speed that sets the cutoff is the rotation angle per second), never as raw
axis-angle components (docs/conventions.md). Translation and joints are filtered per component.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from pipeline.messages import Person


@dataclass
class SmoothingParams:
    enabled: bool = False
    min_cutoff: float = 1.0  # Hz; lower = smoother when still
    beta: float = 0.7  # speed coefficient; higher = less lag when moving
    d_cutoff: float = 1.0  # Hz, for the derivative


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


@dataclass
class _Euro:
    """State of one filtered quantity."""

    x: np.ndarray
    dx: np.ndarray


def aa_to_quat(aa: np.ndarray) -> np.ndarray:  # [N, 3] -> [N, 4] (w, x, y, z)
    import torch  # imported lazily: only runs when smoothing is on

    from engines.rotations import axis_angle_to_matrix, matrix_to_quaternion

    R = axis_angle_to_matrix(torch.from_numpy(np.asarray(aa, np.float64).reshape(-1, 3)))
    return matrix_to_quaternion(R).numpy()


def quat_to_aa(q: np.ndarray) -> np.ndarray:  # [N, 4] (w, x, y, z) -> [N, 3]
    import torch

    from engines.rotations import matrix_to_axis_angle, quaternion_to_matrix

    R = quaternion_to_matrix(torch.from_numpy(np.asarray(q, np.float64).reshape(-1, 4)))
    return matrix_to_axis_angle(R).numpy()


@dataclass
class TrackSmoother:
    """Filters for one track: quaternions for rotations, components for the rest."""

    params: SmoothingParams
    last_t: float | None = None
    state: dict[str, _Euro] = field(default_factory=dict)

    def _linear(self, key: str, x: np.ndarray, dt: float) -> np.ndarray:
        p, s = self.params, self.state.get(key)
        x = np.asarray(x, np.float64)
        if s is None or s.x.shape != x.shape:
            self.state[key] = _Euro(x.copy(), np.zeros_like(x))
            return x
        dx = s.dx + _alpha(p.d_cutoff, dt) * ((x - s.x) / dt - s.dx)
        a = _alpha(p.min_cutoff + p.beta * np.abs(dx), dt)
        s.x, s.dx = s.x + a * (x - s.x), dx
        return s.x

    def _rotation(self, key: str, aa: np.ndarray, dt: float) -> np.ndarray:  # [N, 3]
        p, s = self.params, self.state.get(key)
        q = aa_to_quat(aa)  # [N, 4]
        if s is None or s.x.shape != q.shape:
            self.state[key] = _Euro(q, np.zeros(q.shape[0]))
            return np.asarray(aa, np.float64).reshape(-1, 3)
        q = np.where((q * s.x).sum(-1, keepdims=True) < 0, -q, q)  # same hemisphere
        angle = 2.0 * np.arccos(np.clip(np.abs((q * s.x).sum(-1)), 0.0, 1.0))  # [N]
        speed = s.dx + _alpha(p.d_cutoff, dt) * (angle / dt - s.dx)
        a = _alpha(p.min_cutoff + p.beta * speed, dt)[:, None]
        out = s.x + a * (q - s.x)
        out /= np.linalg.norm(out, axis=-1, keepdims=True)
        s.x, s.dx = out, speed
        return quat_to_aa(out)

    def __call__(self, person: Person, t: float) -> Person:
        dt = (t - self.last_t) if self.last_t is not None else 0.0
        first = self.last_t is None or dt <= 0
        self.last_t = t
        if first:
            dt = 1.0  # seeds the state; output equals input
        if person.global_orient is not None and person.body_pose is not None:
            rots = np.concatenate(
                [person.global_orient.reshape(1, 3), person.body_pose.reshape(-1, 3)]
            )
            if first:
                self.state["rot"] = _Euro(aa_to_quat(rots), np.zeros(rots.shape[0]))
            else:
                rots = self._rotation("rot", rots, dt)
            person.global_orient = rots[0].astype(np.float32)
            person.body_pose = rots[1:].reshape(-1).astype(np.float32)
        for key in ("transl", "joints3d", "joints2d", "betas"):
            val = getattr(person, key)
            if val is not None:
                if first:
                    self.state[key] = _Euro(np.asarray(val, np.float64), np.zeros(val.shape))
                else:
                    setattr(person, key, self._linear(key, val, dt).astype(np.float32))
        return person
