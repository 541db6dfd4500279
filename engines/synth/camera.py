"""Synthetic cameras and crops (docs/conventions.md "Cameras" and "Crops").

World frame = the motion's frame: SMPL body frame, y up, metres. A frame camera is sampled around
the body (horizontal FOV, distance, elevation, yaw relative to the body), the body is moved into
the camera frame exactly (``to_camera``: SMPL rotates about the rest pelvis joint, so the camera
translation absorbs it), and a square crop window around the projected body defines the crop
camera ``f_crop = f * S / s``, ``c_crop = (c - (b - s / 2)) * S / s - 0.5``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from engines.crop import crop_intrinsics, feature_intrinsics  # re-exported: one crop camera
from engines.rotations import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = [
    "CameraRanges",
    "FrameCamera",
    "crop_intrinsics",
    "feature_intrinsics",
    "look_at",
    "sample_crop_window",
    "sample_frame_camera",
    "to_camera",
]


@dataclass(frozen=True)
class CameraRanges:
    """Sampling ranges. Angles in degrees, distances in metres."""

    hfov_deg: tuple[float, float] = (40.0, 75.0)
    distance: tuple[float, float] = (2.0, 8.0)
    elevation_deg: tuple[float, float] = (-15.0, 30.0)
    frame_size: tuple[int, int] = (1280, 720)  # (width, height)
    offcentre: float = 0.6  # body centre within this fraction of the half-FOV
    crop_scale: tuple[float, float] = (1.1, 1.4)  # crop side / body extent
    crop_jitter: float = 0.08  # centre jitter, fraction of the crop side


@dataclass(frozen=True)
class FrameCamera:
    """A frame camera: intrinsics ``K [3, 3]`` and the world -> camera rigid map
    ``x_cam = R (x_world - centre)``."""

    K: np.ndarray  # [3, 3]
    R: np.ndarray  # [3, 3]
    centre: np.ndarray  # [3]
    width: int
    height: int


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 1.0, 0.0)) -> np.ndarray:  # -> [3, 3]
    """World -> OpenCV camera rotation (rows: x right, y down, z forward) looking from ``eye``
    at ``target`` with world ``up``."""
    z = np.asarray(target, np.float64) - np.asarray(eye, np.float64)
    z /= np.linalg.norm(z)
    x = np.cross(-np.asarray(up, np.float64), z)  # right = down x forward
    n = np.linalg.norm(x)
    if n < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to up")
    x /= n
    y = np.cross(z, x)
    return np.stack([x, y, z])


def sample_frame_camera(
    rng: np.random.Generator, target: np.ndarray, ranges: CameraRanges = CameraRanges()
) -> tuple[FrameCamera, dict]:
    """Sample a frame camera looking at the body around world point ``target [3]`` (e.g. the
    pelvis). Returns the camera and the sampled values (hfov, distance, elevation, yaw, in rad
    and m). Yaw is the camera's azimuth about the world vertical; 0 = in front of a body facing
    +z."""
    W, H = ranges.frame_size
    hfov = math.radians(rng.uniform(*ranges.hfov_deg))
    f = (W / 2) / math.tan(hfov / 2)
    dist = rng.uniform(*ranges.distance)
    elev = math.radians(rng.uniform(*ranges.elevation_deg))
    yaw = rng.uniform(-math.pi, math.pi)
    d = np.array([math.sin(yaw) * math.cos(elev), math.sin(elev), math.cos(yaw) * math.cos(elev)])
    eye = np.asarray(target, np.float64) + dist * d
    R = look_at(eye, target)
    # Pan/tilt so the body sits off-centre in the frame (keeps perspective effects realistic).
    vfov = 2 * math.atan((H / 2) / f)
    pan = rng.uniform(-1, 1) * ranges.offcentre * hfov / 2 * 0.6
    tilt = rng.uniform(-1, 1) * ranges.offcentre * vfov / 2 * 0.6
    Ry = axis_angle_to_matrix(torch.tensor([0.0, pan, 0.0], dtype=torch.float64)).numpy()
    Rx = axis_angle_to_matrix(torch.tensor([tilt, 0.0, 0.0], dtype=torch.float64)).numpy()
    R = Rx @ Ry @ R
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]], np.float64)
    info = {"hfov": hfov, "distance": dist, "elevation": elev, "yaw": yaw}
    return FrameCamera(K, R, eye, W, H), info


def to_camera(
    R: np.ndarray,  # [3, 3] world -> camera
    centre: np.ndarray,  # [3] camera centre in world
    global_orient: torch.Tensor,  # [B, 3] world frame
    transl: torch.Tensor,  # [B, 3] world frame
    root_rest: torch.Tensor,  # [B, 3] rest pelvis joint J0(betas)
) -> tuple[torch.Tensor, torch.Tensor]:  # ([B, 3], [B, 3])
    """SMPL parameters of a body moved from world into camera coordinates.

    SMPL maps a rest point x to G (x - J0) + J0 + t; applying x_c = R (x_w - c) gives
    rotation R G and translation R (J0 + t - c) - J0.
    """
    for name, t in (("global_orient", global_orient), ("transl", transl), ("root_rest", root_rest)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2 or t.shape[1] != 3:
            raise ValueError(f"{name} must have shape [B, 3]")
    Rt = torch.as_tensor(R, dtype=global_orient.dtype)
    ct = torch.as_tensor(centre, dtype=global_orient.dtype)
    G = Rt @ axis_angle_to_matrix(global_orient)
    go = matrix_to_axis_angle(G)
    tc = (root_rest + transl - ct) @ Rt.T - root_rest
    return go, tc


def sample_crop_window(
    rng: np.random.Generator | None,
    points2d: np.ndarray,  # [N, 2] projected body points (frame pixels)
    ranges: CameraRanges = CameraRanges(),
    truncate: float = 0.0,
) -> tuple[float, float, float]:
    """Square window ``(bx, by, s)`` around the projected body: side = extent x scale, centre =
    box centre + jitter; ``truncate`` in [0, 1) shifts the window so about that fraction of the
    body extent falls outside (partial crops). ``rng`` None: no jitter, mid scale."""
    p = np.asarray(points2d, np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or len(p) == 0:
        raise ValueError("points2d must have shape [N, 2], N > 0")
    lo, hi = p.min(0), p.max(0)
    c = (lo + hi) / 2
    ext = float(max(hi - lo))
    if rng is None:
        return float(c[0]), float(c[1]), ext * sum(ranges.crop_scale) / 2
    s = ext * rng.uniform(*ranges.crop_scale)
    c = c + rng.uniform(-1, 1, 2) * ranges.crop_jitter * s
    if truncate > 0:
        ang = rng.uniform(0, 2 * math.pi)
        size = hi - lo
        # shift so that the window edge cuts `truncate` of the body extent along a direction
        shift = np.array([math.cos(ang), math.sin(ang)])
        shift = shift * (truncate * size + (s - size) / 2)
        c = c + shift
    return float(c[0]), float(c[1]), float(s)
