"""Per-track state of the fit stage, detection-to-track association and box prediction.

A :class:`Track` holds one person's last fitted body (frame camera, docs/conventions.md), its
per-frame velocity, its age, consecutive misses and its state label (``tracking`` /
``occluded`` / ``lost``). :class:`TrackSet` owns the tracks of one stream: it associates the
people of a frame with the tracks (Hungarian assignment on a cost that mixes box IoU, the
distance between predicted and observed 2D joints, and agreement with the upstream track id),
gives new people fresh ids, and drops tracks missing for more than ``max_misses`` frames.
Boxes for the next frame come from the fitted body: its kernels (or joints), extrapolated by the
velocity, projected with the frame camera, boxed with a margin.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from engines.body_state import BodyState, velocity
from engines.rotations import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = [
    "AssociationConfig",
    "Track",
    "TrackSet",
    "association_cost",
    "box_from_points",
    "extrapolate",
    "iou_matrix",
    "project_points",
    "regression_init",
    "visible_fraction",
]

LABELS = ("tracking", "occluded", "lost")
_INVALID = 1e6


@dataclass(frozen=True)
class AssociationConfig:
    """Association and track life-cycle settings.

    cost(track, person) = iou_weight (1 - IoU) + pose_weight min(d / h, 1) - id_bonus [same
    upstream id], with d the mean distance between the track's predicted 2D joints and the
    person's (regression-head) 2D joints and h the track box height. A pair may match when
    IoU >= min_iou, or d / h <= pose_gate, or the upstream ids agree; and its cost <= max_cost.
    """

    iou_weight: float = 1.0
    pose_weight: float = 1.0
    id_bonus: float = 0.3
    min_iou: float = 0.1
    pose_gate: float = 0.5
    max_cost: float = 1.6
    max_misses: int = 10  # frames a track may be unseen before it is dropped

    def __post_init__(self) -> None:
        for name in ("iou_weight", "pose_weight", "id_bonus", "min_iou", "pose_gate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if self.max_misses < 0:
            raise ValueError(f"max_misses: expected >= 0, got {self.max_misses}")


@dataclass
class Track:
    """One tracked person (owned by the fit stage)."""

    track_id: int
    box: np.ndarray  # [4] last input box, frame pixels
    source_id: int = -1  # the upstream (detect stage) id it last came with
    body: BodyState | None = None  # [1, ...] last fitted state, frame camera
    velocity: BodyState | None = None  # [1, ...] per-frame change of the parameters
    joints3d: np.ndarray | None = None  # [24, 3] last fit, camera frame
    joints2d: np.ndarray | None = None  # [24, 2] last fit, frame pixels
    pred_box: np.ndarray | None = None  # [4] predicted for the next frame (clipped to the image)
    pred_box_raw: np.ndarray | None = None  # [4] the same, unclipped
    pred_velocity: np.ndarray | None = None  # [4] change of the raw predicted box per frame
    pred_frame: int = -1  # the frame whose fit made pred_box_raw
    pred_joints2d: np.ndarray | None = None  # [24, 2] predicted for the next frame
    pred_visible: float = 1.0  # fraction of the predicted (unclipped) box inside the frame
    label: str = "tracking"
    likelihood: float = float("nan")
    occluded_fraction: float = 0.0  # last fit: covered pixels explained by clutter
    age: int = 0  # frames fitted
    confirmed: bool = False  # some fit of this track was not lost (set by the fit stage)
    lost_run: int = 0  # consecutive frames whose fit came out lost (set by the fit stage)
    misses: int = 0  # consecutive frames without a matching person
    last_frame: int = -1

    @property
    def warm(self) -> bool:
        """Whether the next fit can start from this track's body."""
        return self.body is not None and self.label != "lost"

    def expected_box(self) -> np.ndarray:  # -> [4]
        return self.box if self.pred_box is None else self.pred_box

    def expected_joints2d(self) -> np.ndarray | None:  # -> [24, 2]
        return self.joints2d if self.pred_joints2d is None else self.pred_joints2d


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [N, 4], [M, 4] -> [N, M]
    """Intersection over union of every pair of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def association_cost(
    track_boxes: np.ndarray,  # [T, 4]
    boxes: np.ndarray,  # [N, 4]
    track_joints: np.ndarray | None,  # [T, J, 2] (rows of NaN: unknown)
    joints: np.ndarray | None,  # [N, J, 2]
    track_sources: np.ndarray,  # [T] int
    sources: np.ndarray,  # [N] int
    config: AssociationConfig,
) -> np.ndarray:  # -> [T, N]; invalid pairs get a large cost
    """Cost matrix of assigning person n to track t (see :class:`AssociationConfig`)."""
    tb = np.asarray(track_boxes, np.float64).reshape(-1, 4)
    db = np.asarray(boxes, np.float64).reshape(-1, 4)
    T, N = len(tb), len(db)
    iou = iou_matrix(tb, db)
    cost = config.iou_weight * (1.0 - iou)
    valid = iou >= config.min_iou
    if track_joints is not None and joints is not None:
        tj = np.asarray(track_joints, np.float64)
        dj = np.asarray(joints, np.float64)
        if tj.shape[0] != T or dj.shape[0] != N or tj.shape[1:] != dj.shape[1:]:
            raise ValueError(f"track_joints, joints: expected [T, J, 2], [N, J, 2], got "
                             f"{tj.shape}, {dj.shape}")  # fmt: skip
        h = np.maximum(tb[:, 3] - tb[:, 1], 1.0)  # [T]
        d = np.linalg.norm(tj[:, None] - dj[None], axis=-1).mean(-1) / h[:, None]  # [T, N]
        known = np.isfinite(d)
        cost = cost + config.pose_weight * np.where(known, np.minimum(d, 1.0), 1.0)
        valid |= known & (d <= config.pose_gate)
    ts = np.asarray(track_sources).reshape(-1)
    ds = np.asarray(sources).reshape(-1)
    same = (ts[:, None] == ds[None, :]) & (ts[:, None] >= 0)
    cost = cost - config.id_bonus * same
    valid |= same
    valid &= cost <= config.max_cost
    return np.where(valid, cost, _INVALID)


def _assign(cost: np.ndarray) -> list[tuple[int, int]]:
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _INVALID]


class TrackSet:
    """The fit stage's tracks of one stream (ids are positive and never reused)."""

    def __init__(self, config: AssociationConfig | None = None) -> None:
        self.config = config or AssociationConfig()
        self.tracks: dict[int, Track] = {}
        self.next_id = 1

    def associate(
        self,
        boxes: np.ndarray,  # [N, 4]
        joints2d: np.ndarray | None = None,  # [N, J, 2] observed (e.g. regression head)
        sources: np.ndarray | None = None,  # [N] upstream ids (-1: none)
    ) -> list[Track | None]:
        """The existing track of each person, or None for a new person (no state changes)."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        N = len(boxes)
        src = np.full(N, -1) if sources is None else np.asarray(sources).reshape(-1)
        if src.shape != (N,):
            raise ValueError(f"sources: expected shape [{N}], got {src.shape}")
        tracks = list(self.tracks.values())
        out: list[Track | None] = [None] * N
        if not tracks or N == 0:
            return out
        tj = None
        if joints2d is not None:
            J = np.asarray(joints2d).shape[1]
            tj = np.full((len(tracks), J, 2), np.nan)
            for i, t in enumerate(tracks):
                e = t.expected_joints2d()
                if e is not None and e.shape == (J, 2):
                    tj[i] = e
        cost = association_cost(
            np.stack([t.expected_box() for t in tracks]), boxes, tj, joints2d,
            np.array([t.source_id for t in tracks]), src, self.config,
        )  # fmt: skip
        for ti, di in _assign(cost):
            out[di] = tracks[ti]
        return out

    def create(self, box: np.ndarray, source_id: int = -1) -> Track:
        t = Track(self.next_id, np.asarray(box, np.float32).reshape(4).copy(), int(source_id))
        self.tracks[t.track_id] = t
        self.next_id += 1
        return t

    def update(
        self,
        track: Track,
        frame_index: int,
        box: np.ndarray,  # [4]
        body: BodyState,  # [1, ...]
        joints3d: np.ndarray,  # [24, 3]
        joints2d: np.ndarray,  # [24, 2]
        label: str,
        likelihood: float,
        source_id: int = -1,
        warm: bool = True,
        occluded_fraction: float = 0.0,
    ) -> None:
        """Record a fit of ``track`` on ``frame_index``; velocity only across warm fits."""
        if label not in LABELS:
            raise ValueError(f"label: {label!r} is not one of {LABELS}")
        if body.batch != 1:
            raise ValueError(f"body: expected one body, got {body.batch}")
        gap = frame_index - track.last_frame
        if warm and track.body is not None and 0 < gap <= self.config.max_misses + 1:
            v = velocity(track.body, body)
            track.velocity = BodyState(*(x / gap for x in v.as_tuple()))
        else:
            track.velocity = None
        track.body = body.detach()
        track.box = np.asarray(box, np.float32).reshape(4).copy()
        track.joints3d, track.joints2d = joints3d, joints2d
        track.label, track.likelihood = label, float(likelihood)
        track.occluded_fraction = float(occluded_fraction)
        track.source_id = int(source_id)
        track.age += 1
        track.misses = 0
        track.last_frame = frame_index
        track.pred_box = track.pred_joints2d = None
        track.pred_visible = 1.0

    def miss(self, seen: set[int]) -> list[int]:
        """Tracks not in ``seen`` missed this frame: count it, mark them lost, drop those
        unseen for more than ``max_misses`` frames. Returns the dropped ids."""
        dropped = []
        for tid, t in list(self.tracks.items()):
            if tid in seen:
                continue
            t.misses += 1
            t.label = "lost"
            if t.misses > self.config.max_misses:
                dropped.append(tid)
                del self.tracks[tid]
        return dropped

    def __len__(self) -> int:
        return len(self.tracks)


def extrapolate(state: BodyState, vel: BodyState | None, a: float = 1.0) -> BodyState:
    """``state`` moved by ``a`` times the per-frame velocity (rotations composed as rotations)."""
    if vel is None or a == 0:
        return state
    R = axis_angle_to_matrix(state.global_orient)
    D = axis_angle_to_matrix(vel.global_orient * a)
    return BodyState(
        matrix_to_axis_angle(D @ R),
        state.body_pose + a * vel.body_pose,
        state.betas,
        state.transl + a * vel.transl,
    )


def project_points(
    points: np.ndarray | torch.Tensor,  # [..., N, 3] camera frame
    K: np.ndarray,  # [3, 3]
    min_depth: float = 1e-3,
) -> np.ndarray:  # -> [..., N, 2] pixels
    """OpenCV pinhole projection (docs/conventions.md "Cameras"); depth clamped to ``min_depth``."""
    p = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) else points
    p = np.asarray(p, np.float64)
    K = np.asarray(K, np.float64)
    if p.shape[-1] != 3 or K.shape != (3, 3):
        raise ValueError(f"points, K: expected [..., N, 3], [3, 3], got {p.shape}, {K.shape}")
    z = np.maximum(p[..., 2], min_depth)
    u = K[0, 0] * p[..., 0] / z + K[0, 1] * p[..., 1] / z + K[0, 2]
    v = K[1, 1] * p[..., 1] / z + K[1, 2]
    return np.stack([u, v], axis=-1)


def box_from_points(
    points2d: np.ndarray,  # [N, 2] pixels
    margin: float = 0.05,
    width: int | None = None,
    height: int | None = None,
) -> np.ndarray:  # -> [4] float32 xyxy
    """Bounding box of ``points2d`` grown by ``margin`` x its size on each side, clipped to the
    image ``[-0.5, W - 0.5] x [-0.5, H - 0.5]`` when its size is given."""
    p = np.asarray(points2d, np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(1)]
    if len(p) == 0:
        raise ValueError("points2d: expected at least one finite point")
    lo, hi = p.min(0), p.max(0)
    pad = (hi - lo) * margin
    box = np.concatenate([lo - pad, hi + pad])
    if width is not None and height is not None:
        box[[0, 2]] = np.clip(box[[0, 2]], -0.5, width - 0.5)
        box[[1, 3]] = np.clip(box[[1, 3]], -0.5, height - 0.5)
    return box.astype(np.float32)


def visible_fraction(box: np.ndarray, width: int, height: int) -> float:
    """Fraction of the area of ``box`` ([4], unclipped) inside the image."""
    b = np.asarray(box, np.float64).reshape(4)
    area = max(b[2] - b[0], 0) * max(b[3] - b[1], 0)
    if area <= 0:
        return 0.0
    w = max(min(b[2], width - 0.5) - max(b[0], -0.5), 0)
    h = max(min(b[3], height - 0.5) - max(b[1], -0.5), 0)
    return float(w * h / area)


def regression_init(
    pose6d: torch.Tensor,  # [B, 24, 6]
    betas: torch.Tensor,  # [B, 10]
    cam: torch.Tensor,  # [B, 3] weak perspective (s, tx, ty)
    K: torch.Tensor,  # [B, 3, 3] crop camera
    size: int,  # crop side S
) -> BodyState:
    """The regression head's estimate as a body state (re-initialises new and lost tracks).

    The translation follows the training convention (``weak_perspective_to_transl`` with the
    crop camera); the crop camera shares the frame camera's axes, so the state is in the frame
    camera's frame.
    """
    from engines.rotations import rot6d_to_matrix
    from engines.train.regression import weak_perspective_to_transl

    if pose6d.dim() != 3 or pose6d.shape[1:] != (24, 6):
        raise ValueError(f"pose6d: expected [B, 24, 6], got {tuple(pose6d.shape)}")
    B = pose6d.shape[0]
    if betas.shape[0] != B or cam.shape != (B, 3) or K.shape != (B, 3, 3):
        got = f"{tuple(betas.shape)}, {tuple(cam.shape)}, {tuple(K.shape)}"
        raise ValueError(f"betas, cam, K: expected [{B}, N], [{B}, 3], [{B}, 3, 3], got {got}")
    aa = matrix_to_axis_angle(rot6d_to_matrix(pose6d.float()))  # [B, 24, 3]
    transl = weak_perspective_to_transl(cam.float(), K.float(), size)
    return BodyState(aa[:, 0].contiguous(), aa[:, 1:].reshape(B, 69), betas.float(), transl)
