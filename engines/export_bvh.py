"""Export one track of ``poses.npz`` (stages/sinks.py, docs/schema.md) as a BVH file.

    python -m engines.export_bvh out/poses.npz --track 1 --out out/track_1.bvh [--up y|z]

The skeleton is SMPL's (joint names = SMPL names, :func:`engines.motion.motion_to_bvh`) with the
body's rest offsets for the track's betas (mean over its fitted frames), in metres (``--units
cm`` for centimetres). Poses are in the camera frame; they are rotated into

- ``up="y"``: 180 degrees about x (x right, y up, z towards the camera; the person facing the
  camera faces +z). Blender: File > Import > Motion Capture (.bvh) with the default Forward -Z,
  Up Y;
- ``up="z"``: x right, y into the scene, z up (facing the camera = facing -y, Blender's front).
  Blender: import with Forward Y, Up Z.

The camera sits at the origin. The frame rate comes from the timestamps; frames where the track
is missing (between its first and last fitted frame) are interpolated (slerp for rotations,
linear for the translation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from engines.body import BodyModel
from engines.motion import SMPLMotion, motion_to_bvh, write_bvh
from engines.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    quaternion_to_matrix,
)

__all__ = ["AXES", "export_track_bvh", "export_tracks_bvh", "track_ids", "track_motion"]

AXES = {
    "y": np.diag([1.0, -1.0, -1.0]),
    "z": np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]),
}


def _load(npz_path) -> dict[str, np.ndarray]:
    with np.load(Path(npz_path), allow_pickle=False) as d:
        return {k: d[k] for k in d.files}


def _fitted(d: dict[str, np.ndarray]) -> np.ndarray:  # [N] bool
    keys = ("global_orient", "body_pose", "transl")
    return np.all([np.isfinite(d[k]).all(axis=1) for k in keys], axis=0)


def track_ids(npz_path) -> list[int]:
    """Track ids with at least one fitted (SMPL) row."""
    d = _load(npz_path)
    return sorted({int(t) for t in d["track_id"][_fitted(d)]})


def _slerp(q0: np.ndarray, q1: np.ndarray, u: np.ndarray) -> np.ndarray:  # [N, J, 4], [N]
    dot = np.sum(q0 * q1, -1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.clip(np.abs(dot), 0.0, 1.0)
    th = np.arccos(dot)
    s = np.sin(th)
    u = u[:, None, None]
    small = s < 1e-6
    a = np.where(small, 1 - u, np.sin((1 - u) * th) / np.where(small, 1, s))
    b = np.where(small, u, np.sin(u * th) / np.where(small, 1, s))
    q = a * q0 + b * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def track_motion(
    npz_path, track_id: int, up: str = "y", fps: float | None = None, body: BodyModel | None = None
) -> tuple[SMPLMotion, np.ndarray]:
    """The track as an :class:`SMPLMotion` in the ``up`` frame and its rest joints ``[24, 3]``."""
    if up not in AXES:
        raise ValueError(f"up must be one of {sorted(AXES)}, got {up!r}")
    d = _load(npz_path)
    rows = np.flatnonzero((d["track_id"] == int(track_id)) & _fitted(d))
    if rows.size == 0:
        raise ValueError(f"{npz_path}: track {track_id} has no fitted frames "
                         f"(fitted tracks: {track_ids(npz_path)})")  # fmt: skip
    fi_all, ts_all = d["frame_index"], d["timestamp"]
    if fps is None:
        dfi, dts = np.diff(fi_all), np.diff(ts_all)
        ok = (dfi > 0) & (dts > 0)
        fps = float(1.0 / np.median(dts[ok] / dfi[ok])) if ok.any() else 30.0
    fi = fi_all[d["person_frame"][rows]]
    order = np.argsort(fi, kind="stable")
    rows, fi = rows[order], fi[order]
    fi, first = np.unique(fi, return_index=True)
    rows = rows[first]
    A = AXES[up]
    aa = np.concatenate(
        [d["global_orient"][rows, None], d["body_pose"][rows].reshape(-1, 23, 3)], axis=1
    ).astype(np.float64)
    R = axis_angle_to_matrix(torch.from_numpy(aa)).numpy()
    R[:, 0] = A @ R[:, 0]
    q = matrix_to_quaternion(torch.from_numpy(R)).numpy()  # [N, 24, 4]
    betas = np.nanmean(d["betas"][rows].astype(np.float64), axis=0)
    body = body if body is not None else BodyModel.default()
    betas = np.nan_to_num(betas)[: body.num_betas]
    bt = torch.tensor(np.pad(betas, (0, body.num_betas - betas.size)), dtype=torch.float32)
    with torch.no_grad():
        rest = body.rest_joints(bt[None])[0].double().numpy()
    root = (d["transl"][rows].astype(np.float64) + rest[0]) @ A.T  # [N, 3]
    full = np.arange(fi[0], fi[-1] + 1)
    k = np.clip(np.searchsorted(fi, full, side="right") - 1, 0, len(fi) - 1)
    k1 = np.minimum(k + 1, len(fi) - 1)
    span = np.maximum(fi[k1] - fi[k], 1)
    u = np.where(fi[k] == full, 0.0, (full - fi[k]) / span)
    qf = _slerp(q[k], q[k1], u)
    rootf = root[k] + u[:, None] * (root[k1] - root[k])
    aaf = matrix_to_axis_angle(quaternion_to_matrix(torch.from_numpy(qf))).numpy()
    T = len(full)
    motion = SMPLMotion(
        f"track_{track_id}", aaf[:, 0].copy(), aaf[:, 1:].reshape(T, 69).copy(),
        rootf - rest[0], fps, "SMPL",
    )  # fmt: skip
    return motion, rest


def export_track_bvh(
    npz_path,
    track_id: int,
    out_path,
    up: str = "y",
    *,
    units: str = "m",
    fps: float | None = None,
    body: BodyModel | None = None,
) -> Path:
    """Write track ``track_id`` of ``npz_path`` as a BVH (see module docstring)."""
    if units not in ("m", "cm"):
        raise ValueError(f"units must be 'm' or 'cm', got {units!r}")
    motion, rest = track_motion(npz_path, track_id, up, fps, body)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_bvh(out, motion_to_bvh(motion, rest, unit=1.0 if units == "m" else 0.01))


def export_tracks_bvh(
    npz_path, out_path, tracks: list[int] | None = None, up: str = "y", **kw
) -> list[Path]:
    """Export several tracks (default: every fitted one). ``out_path`` may contain ``{track}``;
    otherwise, with more than one track, ``_track<ID>`` is added before the suffix."""
    tracks = track_ids(npz_path) if tracks is None else list(tracks)
    out = str(out_path)
    paths = []
    for t in tracks:
        if "{track}" in out:
            p = Path(out.format(track=t))
        elif len(tracks) > 1:
            p = Path(out).with_name(f"{Path(out).stem}_track{t}{Path(out).suffix or '.bvh'}")
        else:
            p = Path(out)
        paths.append(export_track_bvh(npz_path, t, p, up, **kw))
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("npz", help="poses.npz written by the publish stage")
    ap.add_argument("--track", type=int, action="append", help="track id (repeatable; "
                    "default: every fitted track)")  # fmt: skip
    ap.add_argument("--out", required=True, help="BVH path (may contain {track})")
    ap.add_argument("--up", choices=sorted(AXES), default="y")
    ap.add_argument("--units", choices=("m", "cm"), default="m")
    ap.add_argument("--fps", type=float, default=None, help="override the frame rate")
    args = ap.parse_args(argv)
    try:
        paths = export_tracks_bvh(
            args.npz, args.out, args.track, args.up, units=args.units, fps=args.fps
        )
    except (ValueError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
