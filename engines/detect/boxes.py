"""Box utilities. Boxes are float32 ``[N, 4]`` rows ``(x1, y1, x2, y2)`` in pixels."""

from __future__ import annotations

import numpy as np


def _check(boxes: np.ndarray, name: str) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float32)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"{name}: expected shape [N, 4], got {b.shape}")
    return b


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:  # [N, 4] -> [N, 4]
    b = _check(boxes, "boxes").copy()
    b[:, 2:] += b[:, :2]
    return b


def area(boxes: np.ndarray) -> np.ndarray:  # [N, 4] -> [N]
    b = _check(boxes, "boxes")
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # [N, 4], [M, 4] -> [N, M]
    """Intersection over union of every pair."""
    a, b = _check(a, "a"), _check(b, "b")
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0).astype(np.float32)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:  # -> [N']
    """Indices kept by greedy non-maximum suppression, highest score first."""
    b = _check(boxes, "boxes")
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    if s.shape[0] != b.shape[0]:
        raise ValueError(f"scores: expected shape [{b.shape[0]}], got {s.shape}")
    order = np.argsort(-s, kind="stable")
    keep: list[int] = []
    while order.size:
        i = int(order[0])
        keep.append(i)
        if order.size == 1:
            break
        ious = iou_matrix(b[i : i + 1], b[order[1:]])[0]
        order = order[1:][ious <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def clip_boxes(boxes: np.ndarray, width: int, height: int) -> np.ndarray:  # [N, 4] -> [N, 4]
    """Clip to the image ``u in [-0.5, W - 0.5]`` (docs/conventions.md)."""
    b = _check(boxes, "boxes").copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], -0.5, width - 0.5)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], -0.5, height - 0.5)
    return b


def square_window(box: np.ndarray, scale: float = 1.2) -> tuple[float, float, float]:
    """Crop window ``(bx, by, s)``: centre and side of a square around ``box`` ([4])."""
    b = np.asarray(box, dtype=np.float32).reshape(-1)
    if b.shape != (4,):
        raise ValueError(f"box: expected shape [4], got {b.shape}")
    cx, cy = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
    side = max(b[2] - b[0], b[3] - b[1]) * scale
    return float(cx), float(cy), float(side)
