"""Person crops: square windows, their extraction and their cameras (docs/conventions.md "Crops").

A crop is the square window ``(bx, by, s)`` of the frame (centre, side; frame pixels) resized to
``S x S``. Pixel centres sit at integer coordinates in both images, so frame pixel ``u`` maps to
crop pixel ``u' = (u - (bx - s / 2)) * S / s - 0.5`` (the same for ``v``). The crop camera keeps
the frame camera's centre and axes and only changes the intrinsics: ``f_crop = f * S / s`` and
the principal point maps like any pixel. SMPL translations fitted in a crop are therefore in the
frame camera's frame.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    "Crop",
    "crop_affine",
    "crop_intrinsics",
    "crop_window",
    "extract_crops",
    "feature_intrinsics",
    "frame_intrinsics",
    "make_crop",
]


def frame_intrinsics(
    width: int,
    height: int,
    hfov_deg: float = 55.0,
    fx: float | None = None,
    fy: float | None = None,
    cx: float | None = None,
    cy: float | None = None,
) -> np.ndarray:  # -> [3, 3] float64
    """Frame camera ``K``: given ``fx``/``fy``/``cx``/``cy`` where set, else from the horizontal
    field of view (square pixels) with the principal point at the image centre ``((W-1)/2,
    (H-1)/2)``."""
    if width <= 0 or height <= 0:
        raise ValueError(f"width, height: expected positive sizes, got {width}x{height}")
    if fx is None:
        if not 0.0 < hfov_deg < 180.0:
            raise ValueError(f"hfov_deg: expected a value in (0, 180), got {hfov_deg}")
        fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    fy = fx if fy is None else fy
    if fx <= 0 or fy <= 0:
        raise ValueError(f"fx, fy: expected positive focal lengths, got {fx}, {fy}")
    cx = (width - 1) / 2.0 if cx is None else cx
    cy = (height - 1) / 2.0 if cy is None else cy
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]], np.float64)


def crop_window(
    box: np.ndarray,  # [4] x1, y1, x2, y2
    scale: float = 1.2,
    min_side: float = 16.0,
) -> tuple[float, float, float]:
    """Square window ``(bx, by, s)`` centred on ``box``: side = longer box side x ``scale``
    (at least ``min_side`` pixels)."""
    b = np.asarray(box, np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise ValueError(f"box: expected 4 finite values [x1, y1, x2, y2], got {box!r}")
    if scale <= 0:
        raise ValueError(f"scale: expected > 0, got {scale}")
    side = max(b[2] - b[0], b[3] - b[1], 0.0) * scale
    return float((b[0] + b[2]) / 2), float((b[1] + b[3]) / 2), float(max(side, min_side))


def crop_affine(window: tuple[float, float, float], size: int) -> np.ndarray:  # -> [2, 3]
    """Frame pixels -> crop pixels (the ``cv2.warpAffine`` matrix) of ``window`` at ``size``."""
    bx, by, s = window
    if s <= 0:
        raise ValueError(f"window: side must be positive, got {s}")
    k = size / s
    return np.array(
        [[k, 0.0, -0.5 - k * (bx - s / 2)], [0.0, k, -0.5 - k * (by - s / 2)]], np.float64
    )


def crop_intrinsics(
    K: np.ndarray,  # [3, 3] frame camera
    window: tuple[float, float, float],
    size: int,
) -> np.ndarray:  # -> [3, 3] float64
    """Crop camera of ``window`` resized to ``size``: ``A @ K`` with A the crop affine map."""
    K = np.asarray(K, np.float64)
    if K.shape != (3, 3):
        raise ValueError(f"K: expected shape [3, 3], got {K.shape}")
    A = np.vstack([crop_affine(window, size), [0.0, 0.0, 1.0]])
    return A @ K


def feature_intrinsics(K, stride: int):  # K: [..., 3, 3] numpy or torch -> same type
    """Camera of a stride-``stride`` feature map of an image with camera ``K``: map pixel (i, j)
    covers image pixels [stride i, stride (i + 1)), centred at stride i + (stride - 1) / 2, so
    f' = f / stride and c' = (c + 0.5) / stride - 0.5."""
    Kf = K.clone() if hasattr(K, "clone") else np.array(K, np.float64)
    Kf[..., 0, 0] = K[..., 0, 0] / stride
    Kf[..., 1, 1] = K[..., 1, 1] / stride
    Kf[..., 0, 2] = (K[..., 0, 2] + 0.5) / stride - 0.5
    Kf[..., 1, 2] = (K[..., 1, 2] + 0.5) / stride - 0.5
    return Kf


@dataclass(frozen=True)
class Crop:
    """One person crop: its window, pixel map and camera."""

    window: tuple[float, float, float]  # (bx, by, s) frame pixels
    size: int  # S
    affine: np.ndarray  # [2, 3] frame pixels -> crop pixels
    K: np.ndarray  # [3, 3] crop camera

    def to_frame(self, uv: np.ndarray) -> np.ndarray:  # [N, 2] crop pixels -> [N, 2] frame
        k = self.affine[0, 0]
        return (np.asarray(uv, np.float64) - self.affine[:, 2]) / k


def make_crop(
    K: np.ndarray, box: np.ndarray, size: int, scale: float = 1.2, min_side: float = 16.0
) -> Crop:
    """The crop of ``box`` ([4]) for the frame camera ``K`` ([3, 3])."""
    window = crop_window(box, scale, min_side)
    return Crop(window, int(size), crop_affine(window, size), crop_intrinsics(K, window, size))


def extract_crops(
    image: np.ndarray,  # [H, W, 3] uint8
    crops: list[Crop],
    border_value: tuple[int, int, int] = (0, 0, 0),
) -> np.ndarray:  # -> [B, S, S, 3] uint8
    """Warp each crop out of ``image`` (bilinear; outside the frame filled with
    ``border_value``)."""
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: expected [H, W, 3] uint8, got {getattr(image, 'shape', image)}")
    if not crops:
        raise ValueError("crops: expected at least one crop")
    sizes = {c.size for c in crops}
    if len(sizes) != 1:
        raise ValueError(f"crops: expected one crop size, got {sorted(sizes)}")
    S = sizes.pop()
    out = np.empty((len(crops), S, S, 3), np.uint8)
    for i, c in enumerate(crops):
        out[i] = cv2.warpAffine(
            image,
            c.affine,
            (S, S),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=tuple(int(x) for x in border_value),
        )
    return out
