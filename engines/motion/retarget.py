"""Retarget CMU motion capture (BVH) onto SMPL's 24 joints.

Each SMPL joint ``j`` is driven by one BVH joint ``b(j)`` (tables below, per skeleton family):
``G_smpl_j(t) = G_bvh_b(j)(t) @ C_j``, where the constant ``C_j`` is the smallest rotation that
turns SMPL's rest bone direction of ``j`` (towards its main child) into the BVH's rest bone
direction of ``b(j)`` (towards the BVH joint driving that child). The BVH's posed bone directions
are therefore reproduced exactly, twist follows the BVH, and rest poses that differ a little from
SMPL's T-pose are absorbed. SMPL joints with no BVH counterpart keep the identity local rotation
(hands; the third spine joint of the 43-joint family); leaves (feet, head) keep their parent's
correction. Local rotations are ``R_j = G_parent^T G_j`` as axis-angle (docs/conventions.md).

Both CMU conversions here are y up, face +z and have the subject's left at +x at rest, like
SMPL, so no global axis change is needed (checked by the tests). The root translation places
SMPL's pelvis at the BVH root.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.rotations import matrix_to_axis_angle

from .bvh import BVH, read_bvh

__all__ = ["FAMILIES", "KNOWN_TAKES", "SMPLMotion", "retarget", "retarget_file"]

# SMPL joint -> BVH joint, per skeleton family (None: no counterpart).
_A = ["Hips", "LeftUpLeg", "RightUpLeg", "LowerBack", "LeftLeg", "RightLeg", "Spine", "LeftFoot",
      "RightFoot", "Spine1", "LeftToeBase", "RightToeBase", "Neck", "LeftShoulder",
      "RightShoulder", "Head", "LeftArm", "RightArm", "LeftForeArm", "RightForeArm", "LeftHand",
      "RightHand", None, None]  # fmt: skip
_A2 = ["Hips", "LeftHip", "RightHip", "lowerback", "LeftKnee", "RightKnee", "Chest", "LeftAnkle",
       "RightAnkle", "Chest2", "LeftToe", "RightToe", "lowerneck", "LeftCollar", "RightCollar",
       "Head", "LeftShoulder", "RightShoulder", "LeftElbow", "RightElbow", "LeftWrist",
       "RightWrist", None, None]  # fmt: skip
_B = ["hip", "lThigh", "rThigh", "abdomen", "lShin", "rShin", "chest", "lFoot", "rFoot", None,
      None, None, "neck", "lCollar", "rCollar", "head", "lShldr", "rShldr", "lForeArm",
      "rForeArm", "lHand", "rHand", None, None]  # fmt: skip
FAMILIES: dict[str, list[str | None]] = {"A": _A, "A2": _A2, "B": _B}

# File -> (unit to metres, true fps), from shared/data/mocap/INDEX.md.
KNOWN_TAKES: dict[str, tuple[float, float]] = {
    "cmu_01_01.bvh": (0.056444, 120), "cmu_01_03.bvh": (0.056444, 120),
    "cmu_131_01.bvh": (1.0, 120), "cmu_131_02.bvh": (0.056444, 120),
    "cmu_131_03.bvh": (1.0, 120), "cmu_05_01.bvh": (0.01, 120), "cmu_05_14.bvh": (0.01, 120),
    "cmu_05_15.bvh": (0.01, 120), "cmu_07_03.bvh": (0.01, 120), "cmu_07_06.bvh": (0.01, 120),
    "cmu_08_08.bvh": (0.01, 120), "cmu_13_14.bvh": (0.01, 120), "cmu_13_32.bvh": (0.01, 120),
    "cmu_60_01.bvh": (1.28, 60), "cmu_60_12.bvh": (1.28, 60), "cmu_61_01.bvh": (1.28, 60),
    "cmu_10_02.bvh": (0.01, 120), "cmu_16_15.bvh": (0.01, 120), "cmu_16_31.bvh": (0.01, 120),
    "cmu_16_36.bvh": (0.01, 120), "cmu_61_12.bvh": (1.28, 60),
}  # fmt: skip

SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
# main child of each SMPL joint (-1 for leaves)
MAIN_CHILD = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, -1, -1, 15, 16, 17, -1, 18, 19, 20, 21, 22, 23,
              -1, -1)  # fmt: skip


@dataclass
class SMPLMotion:
    """SMPL pose sequence in the motion's world frame (y up, metres)."""

    name: str
    global_orient: np.ndarray  # [T, 3]
    body_pose: np.ndarray  # [T, 69]
    transl: np.ndarray  # [T, 3]
    fps: float
    family: str

    def __len__(self) -> int:
        return int(self.global_orient.shape[0])


def detect_family(bvh: BVH) -> str:
    names = set(bvh.names)
    for fam, table in FAMILIES.items():
        if all(n in names for n in table if n is not None):
            return fam
    raise ValueError(
        "unknown BVH skeleton: expected the CMU 31-joint (Hips/LeftUpLeg/...) or 43-joint "
        f"(hip/lThigh/...) conversion, got joints {sorted(names)[:8]}..."
    )


def _min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # unit [3], [3] -> [3, 3]
    """Smallest rotation R with R a = b."""
    v = np.cross(a, b)
    c = float(np.dot(a, b))
    if c < -1 + 1e-9:  # opposite: rotate pi about any axis orthogonal to a
        axis = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def _min_rotation_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [T, 3] x2 -> [T, 3, 3]
    """Per-row smallest rotation R with R a = b (unit inputs, not opposite)."""
    v = np.cross(a, b)
    c = np.clip((a * b).sum(-1), -1 + 1e-9, None)
    z = np.zeros_like(c)
    vx = np.stack([z, -v[:, 2], v[:, 1], v[:, 2], z, -v[:, 0], -v[:, 1], v[:, 0], z], -1)
    vx = vx.reshape(-1, 3, 3)
    return np.eye(3) + vx + vx @ vx / (1 + c)[:, None, None]


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v)
    if n < 1e-9:
        raise ValueError("zero-length bone in the rest skeleton")
    return v / n


def _target_joint(j: int, table: list[str | None]) -> int:
    """First mapped joint along SMPL's main-child chain below ``j`` (-1 if none)."""
    c = MAIN_CHILD[j]
    while c >= 0 and table[c] is None:
        c = MAIN_CHILD[c]
    return c


def retarget(
    bvh: BVH,
    scale: float,
    rest_joints: np.ndarray,  # [24, 3] SMPL rest (T-pose) joints, metres
    fps: float | None = None,
    name: str = "",
) -> SMPLMotion:
    """SMPL parameters reproducing the BVH's bone directions (see module docstring)."""
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    if rest_joints.shape != (24, 3):
        raise ValueError(f"rest_joints must be [24, 3], got {rest_joints.shape}")
    family = detect_family(bvh)
    table = FAMILIES[family]
    idx = [bvh.index(n) if n is not None else -1 for n in table]
    G, P = bvh.forward_kinematics(scale)  # [T, J, 3, 3], [T, J, 3]
    rest = BVH(bvh.names, bvh.parents, bvh.offsets, bvh.channels,
               np.zeros((1, bvh.motion.shape[1])), bvh.frame_time)  # fmt: skip
    _, P0 = rest.forward_kinematics(scale)
    P0 = P0[0]
    T = G.shape[0]
    Gs = np.empty((T, 24, 3, 3))
    corr = [np.eye(3)] * 24
    for j in range(24):
        p = SMPL_PARENTS[j]
        if idx[j] < 0:
            Gs[:, j] = Gs[:, p]
            corr[j] = np.eye(3)
            continue
        t = _target_joint(j, table)
        # a zero-length BVH bone (e.g. Hips -> LowerBack): aim further down the chain
        while t >= 0 and np.linalg.norm(P0[idx[t]] - P0[idx[j]]) < 1e-6:
            t = _target_joint(t, table)
        if t < 0:  # leaf: keep the parent's correction
            corr[j] = corr[p] if p >= 0 else np.eye(3)
        else:
            d_smpl = _unit(rest_joints[t] - rest_joints[j])
            d_bvh = _unit(P0[idx[t]] - P0[idx[j]])
            corr[j] = _min_rotation(d_smpl, d_bvh)
        Gs[:, j] = G[:, idx[j]] @ corr[j]
        if t >= 0:  # BVH joints between b(j) and b(t) bend the bone: swing it onto the BVH's
            d_now = Gs[:, j] @ d_smpl
            d_bvh_t = P[:, idx[t]] - P[:, idx[j]]
            d_bvh_t /= np.linalg.norm(d_bvh_t, axis=-1, keepdims=True)
            Gs[:, j] = _min_rotation_batch(d_now, d_bvh_t) @ Gs[:, j]
    local = np.empty_like(Gs)
    local[:, 0] = Gs[:, 0]
    for j in range(1, 24):
        local[:, j] = np.swapaxes(Gs[:, SMPL_PARENTS[j]], -1, -2) @ Gs[:, j]
    aa = matrix_to_axis_angle(torch.from_numpy(local)).numpy()  # [T, 24, 3]
    transl = P[:, idx[0]] - rest_joints[0]
    rate = fps if fps is not None else 1.0 / bvh.frame_time
    return SMPLMotion(name, aa[:, 0].copy(), aa[:, 1:].reshape(T, 69).copy(), transl, rate, family)


def _estimate_scale(bvh: BVH) -> float:
    """Units to metres from the rest leg length (hip to ankle ~ 0.8 m for an adult)."""
    fam = detect_family(bvh)
    t = FAMILIES[fam]
    rest = BVH(bvh.names, bvh.parents, bvh.offsets, bvh.channels,
               np.zeros((1, bvh.motion.shape[1])), bvh.frame_time)  # fmt: skip
    _, P0 = rest.forward_kinematics(1.0)
    leg = np.linalg.norm(P0[0, bvh.index(t[1])] - P0[0, bvh.index(t[7])])
    return 0.8 / leg


def retarget_file(
    path: str | Path,
    rest_joints: np.ndarray,  # [24, 3]
    scale: float | None = None,
    fps: float | None = None,
) -> SMPLMotion:
    """Read and retarget one take; scale and fps default to :data:`KNOWN_TAKES`, else the scale
    is estimated from the leg length (with a warning) and fps from the file."""
    path = Path(path)
    bvh = read_bvh(path)
    known = KNOWN_TAKES.get(path.name)
    if scale is None:
        if known:
            scale = known[0]
        else:
            scale = _estimate_scale(bvh)
            warnings.warn(f"{path.name}: unknown units, estimated {scale:.4g} m per unit",
                          stacklevel=2)  # fmt: skip
    if fps is None and known:
        fps = known[1]
    return retarget(bvh, scale, rest_joints, fps, path.stem)
