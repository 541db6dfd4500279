"""Retarget CMU motion capture (BVH) onto SMPL's 24 joints (docs/conventions.md).

Each SMPL joint ``j`` is driven by a BVH joint ``b(j)`` and, for its bone direction, a BVH target
``t(j)`` (tables :data:`FAMILIES`). With the BVH rest (all rotations zero) as reference:

- rest correction ``C_j``: the smallest rotation taking SMPL's rest bone direction of ``j`` (to
  its main child; a fixed forward/up/sideways direction for the leaves foot, head, hand) onto the
  BVH rest direction ``b(j) -> t(j)``;
- per frame ``G_j = S_j(t) G_bvh_b(j)(t) C_j``, with ``S_j`` the smallest rotation taking
  ``G_bvh C_j d_j`` onto the posed BVH direction ``b(j) -> t(j)`` (identity when the BVH segment is
  rigid; it matters when intermediate BVH joints move, e.g. the two-joint neck);
- twist follows the BVH joint's frame; a BVH rest that is not a T-pose (legs apart, arms down in
  the 131_* takes) is reproduced, not copied as zero;
- joints without a target keep ``C_j = C_parent`` (no swing); joints without a BVH counterpart
  keep the identity local rotation; the root uses ``C = I`` (the BVH root frame at rest is
  upright, faces +z with the subject's left at +x, like SMPL's body frame: checked by the tests).

Local rotations are ``R_j = G_parent^T G_j`` (axis-angle). ``transl`` puts SMPL's mid-hip point on
the BVH's mid-hip point, with BVH positions scaled by the SMPL / BVH leg-length ratio so that the
feet stay near the floor (y = 0 in the CMU takes). Output is in the take's world frame (y up).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.body import JOINT_NAMES, SMPL_PARENTS
from engines.rotations import matrix_to_axis_angle

from .bvh import BVH, bvh_from_rotations, read_bvh

__all__ = [
    "FAMILIES",
    "KNOWN_TAKES",
    "SMPLMotion",
    "bone_direction_errors",
    "detect_family",
    "motion_to_bvh",
    "retarget",
    "retarget_file",
    "smpl_fk",
]

Map = tuple[str | None, str | None]  # (driving BVH joint, target BVH joint for the direction)
# Tables list one Map per SMPL joint, in SMPL order (docs/conventions.md): pelvis, L/R hip, spine1,
# L/R knee, spine2, L/R ankle, spine3, L/R foot, neck, L/R collar, head, L/R shoulder, L/R elbow,
# L/R wrist, L/R hand. "<joint>_end" is the joint's BVH End Site.

# Family A: cgspeed MotionBuilder-friendly (31 joints, 01_* takes).
_A: tuple[Map, ...] = (
    ("Hips", None), ("LeftUpLeg", "LeftLeg"), ("RightUpLeg", "RightLeg"),
    ("LowerBack", "Spine"), ("LeftLeg", "LeftFoot"), ("RightLeg", "RightFoot"),
    ("Spine", "Spine1"), ("LeftFoot", "LeftToeBase"), ("RightFoot", "RightToeBase"),
    ("Spine1", None), ("LeftToeBase", "LeftToeBase_end"), ("RightToeBase", "RightToeBase_end"),
    ("Neck", "Head"), ("LeftShoulder", "LeftArm"), ("RightShoulder", "RightArm"),
    ("Head", "Head_end"), ("LeftArm", "LeftForeArm"), ("RightArm", "RightForeArm"),
    ("LeftForeArm", "LeftHand"), ("RightForeArm", "RightHand"),
    ("LeftHand", "LFingers"), ("RightHand", "RFingers"),
    ("LeftFingerBase", "LFingers"), ("RightFingerBase", "RFingers"),
)  # fmt: skip
# Family A, 3dsMax-friendly naming (131_* takes; rest pose has the arms down).
_A2: tuple[Map, ...] = (
    ("Hips", None), ("LeftHip", "LeftKnee"), ("RightHip", "RightKnee"),
    ("lowerback", "Chest"), ("LeftKnee", "LeftAnkle"), ("RightKnee", "RightAnkle"),
    ("Chest", "Chest2"), ("LeftAnkle", "LeftToe"), ("RightAnkle", "RightToe"),
    ("Chest2", None), ("LeftToe", "LeftToe_end"), ("RightToe", "RightToe_end"),
    ("lowerneck", "Head"), ("LeftCollar", "LeftShoulder"), ("RightCollar", "RightShoulder"),
    ("Head", "Head_end"), ("LeftShoulder", "LeftElbow"), ("RightShoulder", "RightElbow"),
    ("LeftElbow", "LeftWrist"), ("RightElbow", "RightWrist"),
    ("LeftWrist", "LFingers"), ("RightWrist", "RFingers"),
    ("lhand", "LFingers"), ("rhand", "RFingers"),
)  # fmt: skip
# Family B: cgspeed Daz-friendly (43 joints, 17 move; no spine3, toes or moving fingers).
_B: tuple[Map, ...] = (
    ("hip", None), ("lThigh", "lShin"), ("rThigh", "rShin"),
    ("abdomen", "chest"), ("lShin", "lFoot"), ("rShin", "rFoot"),
    ("chest", "neck"), ("lFoot", "lFoot_end"), ("rFoot", "rFoot_end"),
    (None, None), (None, None), (None, None),
    ("neck", "head"), ("lCollar", "lShldr"), ("rCollar", "rShldr"),
    ("head", None), ("lShldr", "lForeArm"), ("rShldr", "rForeArm"),
    ("lForeArm", "lHand"), ("rForeArm", "rHand"),
    ("lHand", "lMid1"), ("rHand", "rMid1"),
    (None, None), (None, None),
)  # fmt: skip
MAIN_CHILD = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, -1, -1, 15, 16, 17, -1, 18, 19, 20, 21, 22, 23,
              -1, -1)  # fmt: skip
# BVH written from SMPL by :func:`motion_to_bvh` (joint names = SMPL names).
_SMPL: tuple[Map, ...] = tuple(
    (n, JOINT_NAMES[MAIN_CHILD[j]] if j and MAIN_CHILD[j] >= 0 else None)
    for j, n in enumerate(JOINT_NAMES)
)
FAMILIES: dict[str, tuple[Map, ...]] = {"A": _A, "A2": _A2, "B": _B, "SMPL": _SMPL}
# SMPL rest direction used for leaves (no SMPL child): toes forward, head up, hands outwards.
_LEAF_DIR = {10: (0, 0, 1.0), 11: (0, 0, 1.0), 15: (0, 1.0, 0), 22: (1.0, 0, 0), 23: (-1.0, 0, 0)}

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


@dataclass
class SMPLMotion:
    """SMPL pose sequence in the take's world frame (y up, metres, axis-angle)."""

    name: str
    global_orient: np.ndarray  # [T, 3]
    body_pose: np.ndarray  # [T, 69]
    transl: np.ndarray  # [T, 3]
    fps: float
    family: str

    def __post_init__(self) -> None:
        T = np.shape(self.global_orient)[0] if np.ndim(self.global_orient) == 2 else -1
        for key, width in (("global_orient", 3), ("body_pose", 69), ("transl", 3)):
            if np.shape(getattr(self, key)) != (T, width):
                raise ValueError(f"{key} must be [T, {width}] with T = {T}, got "
                                 f"{np.shape(getattr(self, key))}")  # fmt: skip
        if not self.fps > 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")

    def __len__(self) -> int:
        return int(self.global_orient.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write an ``.npz`` (no pickle) readable by :meth:`load`."""
        path = Path(path)
        np.savez(path, global_orient=self.global_orient, body_pose=self.body_pose,
                 transl=self.transl, fps=np.float64(self.fps), name=np.str_(self.name),
                 family=np.str_(self.family))  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | Path) -> SMPLMotion:
        with np.load(Path(path), allow_pickle=False) as d:
            return cls(str(d["name"]), d["global_orient"], d["body_pose"], d["transl"],
                       float(d["fps"]), str(d["family"]))  # fmt: skip


def detect_family(bvh: BVH) -> str:
    """Skeleton family ("A", "A2", "B" or "SMPL") from the joint names."""
    names = set(bvh.names)
    for fam, table in FAMILIES.items():
        if all(n in names for pair in table for n in pair if n is not None):
            return fam
    raise ValueError(
        "unknown BVH skeleton: expected a CMU 31-joint (Hips/LeftUpLeg/...) or 43-joint "
        f"(hip/lThigh/...) conversion or an SMPL export, got joints {sorted(names)[:8]}..."
    )


def _unit(v: np.ndarray) -> np.ndarray:  # [..., 3]
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # unit [..., 3] x2 -> [..., 3, 3]
    """Smallest rotations ``R`` with ``R a = b`` (batched; opposite vectors turn about an axis
    orthogonal to ``a``)."""
    a, b = np.broadcast_arrays(_unit(a), _unit(b))
    v = np.cross(a, b)
    c = np.einsum("...i,...i->...", a, b)
    opp = c < -1 + 1e-8
    if np.any(opp):
        helper = np.where(np.abs(a[..., :1]) < 0.9, [1.0, 0, 0], [0, 1.0, 0])
        axis = _unit(np.cross(a, helper))
        v = np.where(opp[..., None], axis, v)
    k = np.zeros((*v.shape[:-1], 3, 3))
    k[..., 0, 1], k[..., 0, 2], k[..., 1, 2] = -v[..., 2], v[..., 1], -v[..., 0]
    k = k - np.swapaxes(k, -1, -2)
    f = np.where(opp, 1.0, 1.0 / np.maximum(1 + c, 1e-12))
    R = np.eye(3) + k + (k @ k) * f[..., None, None]
    if np.any(opp):
        R = np.where(opp[..., None, None], 2 * v[..., :, None] * v[..., None, :] - np.eye(3), R)
    return R


def smpl_fk(
    local: np.ndarray,  # [T, 24, 3, 3] local rotations (index 0: global orient)
    rest_joints: np.ndarray,  # [24, 3]
    transl: np.ndarray | None = None,  # [T, 3]
) -> tuple[np.ndarray, np.ndarray]:
    """SMPL forward kinematics: global rotations ``[T, 24, 3, 3]`` and joints ``[T, 24, 3]``
    (joint 0 at ``rest_joints[0] + transl``), as ``BodyModel`` computes them."""
    if local.ndim != 4 or local.shape[1:] != (24, 3, 3):
        raise ValueError(f"local must be [T, 24, 3, 3], got {local.shape}")
    if rest_joints.shape != (24, 3):
        raise ValueError(f"rest_joints must be [24, 3], got {rest_joints.shape}")
    G = np.empty_like(local)
    J = np.empty((local.shape[0], 24, 3))
    G[:, 0] = local[:, 0]
    J[:, 0] = rest_joints[0] + (0 if transl is None else transl)
    for j in range(1, 24):
        p = SMPL_PARENTS[j]
        G[:, j] = G[:, p] @ local[:, j]
        J[:, j] = J[:, p] + G[:, p] @ (rest_joints[j] - rest_joints[p])
    return G, J


def _resolve_target(bvh: BVH, P0: np.ndarray, b: int, name: str | None) -> int:
    """Index of the target joint, walking down first children past points coinciding with
    ``b`` at rest (e.g. a zero-length finger base); -1 if none."""
    if name is None:
        return -1
    t = bvh.index(name)
    while np.linalg.norm(P0[t] - P0[b]) < 1e-6:
        kids = [c for c, p in enumerate(bvh.parents) if p == t]
        if not kids:
            return -1
        t = kids[0]
    return t


def _leg_length(P: np.ndarray, hips, knees, ankles) -> float:  # P [J, 3]
    return float(np.mean([np.linalg.norm(P[k] - P[h]) + np.linalg.norm(P[a] - P[k])
                          for h, k, a in zip(hips, knees, ankles)]))  # fmt: skip


def retarget(
    bvh: BVH,
    scale: float,
    rest_joints: np.ndarray,  # [24, 3] SMPL rest (T-pose) joints, metres
    fps: float | None = None,
    name: str = "",
) -> SMPLMotion:
    """SMPL parameters following the BVH's bone directions (see module docstring)."""
    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    if rest_joints.shape != (24, 3):
        raise ValueError(f"rest_joints must be [24, 3], got {rest_joints.shape}")
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    family = detect_family(bvh)
    table = FAMILIES[family]
    G, P = bvh.forward_kinematics(scale)  # [T, Jb, 3, 3], [T, Jb, 3]
    P0 = bvh.rest_positions(scale)  # [Jb, 3]
    T = G.shape[0]
    src = [bvh.index(b) if b is not None else -1 for b, _ in table]
    tgt = [_resolve_target(bvh, P0, src[j], t) if src[j] >= 0 else -1 for j, (_, t) in
           enumerate(table)]  # fmt: skip
    Gs = np.empty((T, 24, 3, 3))
    corr = [np.eye(3)] * 24
    for j in range(24):
        p = SMPL_PARENTS[j]
        b, t = src[j], tgt[j]
        if b < 0:  # no counterpart: identity local rotation
            Gs[:, j] = Gs[:, p]
            corr[j] = corr[p]
            continue
        if j == 0 or t < 0:
            corr[j] = np.eye(3) if j == 0 else corr[p]
            Gs[:, j] = G[:, b] @ corr[j]
            continue
        c = MAIN_CHILD[j]
        d_smpl = _unit(rest_joints[c] - rest_joints[j]) if c >= 0 else np.array(_LEAF_DIR[j])
        corr[j] = _min_rotation(d_smpl, P0[t] - P0[b])
        cand = G[:, b] @ corr[j]  # [T, 3, 3]
        swing = _min_rotation(cand @ d_smpl, P[:, t] - P[:, b])
        Gs[:, j] = swing @ cand
    local = np.empty_like(Gs)
    local[:, 0] = Gs[:, 0]
    par = list(SMPL_PARENTS[1:])
    local[:, 1:] = np.swapaxes(Gs[:, par], -1, -2) @ Gs[:, 1:]
    aa = matrix_to_axis_angle(torch.from_numpy(local)).numpy()  # [T, 24, 3]
    # root translation: SMPL mid-hip onto the BVH mid-hip, BVH scaled to SMPL's leg length
    hips, knees, ankles = (1, 2), (4, 5), (7, 8)
    ratio = _leg_length(rest_joints, hips, knees, ankles) / _leg_length(
        P0, *[[src[k] for k in ks] for ks in (hips, knees, ankles)]
    )
    mid_bvh = ratio * 0.5 * (P[:, src[1]] + P[:, src[2]])  # [T, 3]
    mid_rest = 0.5 * (rest_joints[1] + rest_joints[2]) - rest_joints[0]
    transl = mid_bvh - rest_joints[0] - Gs[:, 0] @ mid_rest
    rate = float(fps) if fps is not None else 1.0 / bvh.frame_time
    body_pose = aa[:, 1:].reshape(T, 69).copy()
    return SMPLMotion(name, aa[:, 0].copy(), body_pose, transl, rate, family)


def bone_direction_errors(
    bvh: BVH,
    motion: SMPLMotion,
    rest_joints: np.ndarray,  # [24, 3]
    frames: np.ndarray | None = None,  # [N] frame indices
    driven_only: bool = True,
) -> np.ndarray:
    """Angles (degrees) ``[N, L]`` between SMPL bones (FK of ``motion``) and the BVH bones.

    ``driven_only``: SMPL bone ``j -> main child`` against the BVH direction ``b(j) -> t(j)`` it
    follows; else every SMPL parent -> child bone whose two ends both have a BVH counterpart at
    distinct rest positions (includes fixed offsets such as pelvis -> hips, whose rest directions
    differ between skeletons)."""
    from engines.rotations import axis_angle_to_matrix

    table = FAMILIES[detect_family(bvh)]
    frames = np.arange(len(motion)) if frames is None else np.asarray(frames)
    _, P = bvh.forward_kinematics(1.0)
    P0 = bvh.rest_positions(1.0)
    aa = np.concatenate([motion.global_orient[frames, None],
                         motion.body_pose[frames].reshape(-1, 23, 3)], axis=1)  # fmt: skip
    local = axis_angle_to_matrix(torch.from_numpy(aa)).numpy()
    _, J = smpl_fk(local, np.asarray(rest_joints, np.float64))
    src = [bvh.index(b) if b is not None else -1 for b, _ in table]
    pairs = []
    for j in range(1, 24):
        if driven_only:
            c = MAIN_CHILD[j]
            t = _resolve_target(bvh, P0, src[j], table[j][1]) if src[j] >= 0 else -1
            if c >= 0 and t >= 0:
                pairs.append((j, c, src[j], t))
        else:
            p = SMPL_PARENTS[j]
            if src[j] >= 0 and src[p] >= 0 and np.linalg.norm(P0[src[j]] - P0[src[p]]) > 1e-6:
                pairs.append((p, j, src[p], src[j]))
    a = np.array([(i, k) for i, k, _, _ in pairs])
    b = np.array([(i, k) for _, _, i, k in pairs])
    ds = _unit(J[:, a[:, 1]] - J[:, a[:, 0]])
    db = _unit(P[frames][:, b[:, 1]] - P[frames][:, b[:, 0]])
    cos = np.clip(np.einsum("nlc,nlc->nl", ds, db), -1.0, 1.0)
    return np.rad2deg(np.arccos(cos))


def motion_to_bvh(
    motion: SMPLMotion,
    rest_joints: np.ndarray,  # [24, 3] metres
    unit: float = 1.0,
    order: str = "ZYX",
) -> BVH:
    """A BVH of the SMPL skeleton (joint names = SMPL names, file unit = ``unit`` metres) playing
    ``motion``; e.g. for Blender. :func:`retarget` of it gives ``motion`` back."""
    from engines.rotations import axis_angle_to_matrix

    rest_joints = np.asarray(rest_joints, dtype=np.float64)
    if rest_joints.shape != (24, 3):
        raise ValueError(f"rest_joints must be [24, 3], got {rest_joints.shape}")
    T = len(motion)
    aa = np.concatenate([motion.global_orient[:, None], motion.body_pose.reshape(T, 23, 3)], 1)
    local = axis_angle_to_matrix(torch.from_numpy(aa.astype(np.float64))).numpy()
    offsets = np.zeros((24, 3))
    par = list(SMPL_PARENTS)
    offsets[1:] = rest_joints[1:] - rest_joints[par[1:]]
    ends = {j: np.asarray(d) * (0.15 if j == 15 else 0.08) / unit for j, d in _LEAF_DIR.items()}
    root = (rest_joints[0] + motion.transl) / unit
    return bvh_from_rotations(list(JOINT_NAMES), par, offsets / unit, local, root,
                              1.0 / motion.fps, order, ends)  # fmt: skip


def _estimate_scale(bvh: BVH) -> float:
    """Units to metres from the rest leg length (hip to ankle ~ 0.8 m for an adult)."""
    table = FAMILIES[detect_family(bvh)]
    P0 = bvh.rest_positions(1.0)
    idx = [bvh.index(table[k][0]) for k in (1, 2, 4, 5, 7, 8)]
    return 0.8 / _leg_length(P0, idx[0:2], idx[2:4], idx[4:6])


def retarget_file(
    path: str | Path,
    rest_joints: np.ndarray,  # [24, 3]
    scale: float | None = None,
    fps: float | None = None,
) -> SMPLMotion:
    """Read and retarget one take. ``scale``/``fps`` default to :data:`KNOWN_TAKES`; otherwise
    the scale is estimated from the leg length (with a warning) and fps read from the file."""
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
