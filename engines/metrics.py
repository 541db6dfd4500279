"""Pose accuracy metrics (DESIGN.md s4): MPJPE, PA-MPJPE (mm) and PCKh@0.5.

Joints are SMPL's 24 (docs/conventions.md) or the 14-joint evaluation subset ``JOINTS14``.
Prediction and ground truth are centred on the same root (the pelvis by default). Invisible joints
(``visible`` False) are excluded; means are taken over all visible joints of all samples, as in the
released 3DNBF evaluation.
"""

from __future__ import annotations

import numpy as np

__all__ = ["JOINTS14", "mpjpe", "pa_mpjpe", "pckh", "procrustes_align"]

# LSP order on SMPL joints: R ankle, R knee, R hip, L hip, L knee, L ankle, R wrist, R elbow,
# R shoulder, L shoulder, L elbow, L wrist, neck, head.
JOINTS14 = (8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, 15)
_PELVIS = 0


def _check(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray | None, dim: int) -> np.ndarray:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.ndim != 3 or pred.shape[-1] != dim or pred.shape != gt.shape:
        raise ValueError(f"pred and gt must both be [N, J, {dim}], got {pred.shape} and {gt.shape}")
    if visible is None:
        return np.ones(pred.shape[:2], dtype=bool)
    visible = np.asarray(visible, dtype=bool)
    if visible.shape != pred.shape[:2]:
        raise ValueError(f"visible must be [N, J] = {pred.shape[:2]}, got {visible.shape}")
    return visible


def _select(x: np.ndarray, joints: tuple[int, ...] | None) -> np.ndarray:
    return x if joints is None else x[:, list(joints)]


def mpjpe(
    pred: np.ndarray,  # [N, 24, 3] metres
    gt: np.ndarray,  # [N, 24, 3] metres
    visible: np.ndarray | None = None,  # [N, 24] bool
    joints: tuple[int, ...] | None = None,
    root: int = _PELVIS,
) -> float:
    """Mean per-joint position error in mm after aligning both roots (root on the full set)."""
    visible = _check(pred, gt, visible, 3)
    p = pred - pred[:, root : root + 1]
    g = gt - gt[:, root : root + 1]
    err = np.linalg.norm(_select(p, joints) - _select(g, joints), axis=-1)  # [N, J']
    v = _select(visible, joints)
    return float(err[v].mean() * 1000.0) if v.any() else float("nan")


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:  # [J, 3], [J, 3] -> [J, 3]
    """Similarity transform (scale, rotation, translation) of ``pred`` that best fits ``gt``."""
    mp, mg = pred.mean(0), gt.mean(0)
    x, y = pred - mp, gt - mg
    u, s, vt = np.linalg.svd(x.T @ y)
    d = np.sign(np.linalg.det(u @ vt))
    corr = np.diag([1.0, 1.0, d])
    rot = u @ corr @ vt  # x @ rot ~ y
    scale = (s * np.diag(corr)).sum() / max((x**2).sum(), 1e-12)
    return scale * x @ rot + mg


def pa_mpjpe(
    pred: np.ndarray,  # [N, 24, 3]
    gt: np.ndarray,  # [N, 24, 3]
    visible: np.ndarray | None = None,  # [N, 24] bool
    joints: tuple[int, ...] | None = None,
) -> float:
    """MPJPE in mm after a per-sample similarity Procrustes alignment on the visible joints."""
    visible = _check(pred, gt, visible, 3)
    p, g, v = _select(pred, joints), _select(gt, joints), _select(visible, joints)
    errs = []
    for i in range(p.shape[0]):
        if v[i].sum() < 3:
            continue
        aligned = procrustes_align(p[i, v[i]], g[i, v[i]])
        errs.append(np.linalg.norm(aligned - g[i, v[i]], axis=-1))
    return float(np.concatenate(errs).mean() * 1000.0) if errs else float("nan")


def pckh(
    pred2d: np.ndarray,  # [N, J, 2] pixels
    gt2d: np.ndarray,  # [N, J, 2] pixels
    head_size: np.ndarray,  # [N] pixels (neck to head distance)
    visible: np.ndarray | None = None,  # [N, J] bool
    joints: tuple[int, ...] | None = None,
    threshold: float = 0.5,
) -> float:
    """Fraction of visible joints within ``threshold * head_size`` of the ground truth (2D)."""
    visible = _check(pred2d, gt2d, visible, 2)
    head_size = np.asarray(head_size, dtype=float)
    if head_size.shape != (pred2d.shape[0],):
        raise ValueError(f"head_size must be [N] = ({pred2d.shape[0]},), got {head_size.shape}")
    d = np.linalg.norm(_select(pred2d, joints) - _select(gt2d, joints), axis=-1)
    ok = d <= threshold * head_size[:, None]
    v = _select(visible, joints)
    return float(ok[v].mean()) if v.any() else float("nan")
