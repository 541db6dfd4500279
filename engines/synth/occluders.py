"""Occluders: textured rectangles, ellipses and random polygons covering part of the body, and a
square patch at a given position (the AdvOcc protocol slides one over the crop).

Textures come from the same split as the backgrounds (real image crops from a ``BackgroundBank``)
or are procedural (``procedural_background``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .backgrounds import BackgroundBank, colour_jitter, procedural_background

__all__ = [
    "Occluder",
    "advocc_positions",
    "apply_occluder",
    "occluder_texture",
    "random_occluder",
    "square_patch",
]


@dataclass
class Occluder:
    """An occluder layer: ``mask [S, S]`` bool, ``rgb [S, S, 3]`` uint8, ``coverage`` = fraction
    of the body silhouette it hides, ``kind`` its shape."""

    mask: np.ndarray  # [S, S]
    rgb: np.ndarray  # [S, S, 3]
    coverage: float
    kind: str


def occluder_texture(
    rng: np.random.Generator, S: int, bank: BackgroundBank | None, real_prob: float = 0.6
) -> np.ndarray:  # -> [S, S, 3] uint8
    """A texture for an occluder: a real image crop from ``bank`` or a procedural pattern."""
    if bank is not None and len(bank) and rng.random() < real_prob:
        return bank.random_crop(rng, S)
    return colour_jitter(procedural_background(rng, S), rng)


def _shape_mask(
    rng: np.random.Generator, kind: str, S: int, centre: np.ndarray, size: float, params: dict
) -> np.ndarray:
    m = np.zeros((S, S), np.uint8)
    c = (float(centre[0]), float(centre[1]))
    if kind == "rect":
        w, h = size * params["aspect"], size / params["aspect"]
        box = cv2.boxPoints((c, (w, h), params["angle"]))
        cv2.fillPoly(m, [np.round(box * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    elif kind == "ellipse":
        axes = (max(1, int(size * params["aspect"] / 2)), max(1, int(size / params["aspect"] / 2)))
        cv2.ellipse(m, (int(c[0]), int(c[1])), axes, params["angle"], 0, 360, 1, -1)
    else:  # blob: star-shaped random polygon
        r = size / 2 * params["radii"]
        a = params["angles"]
        pts = np.stack([c[0] + r * np.cos(a), c[1] + r * np.sin(a)], 1)
        cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    return m.astype(bool)


def random_occluder(
    rng: np.random.Generator,
    silhouette: np.ndarray,  # [S, S] bool
    coverage: tuple[float, float] = (0.1, 0.4),
    bank: BackgroundBank | None = None,
    kinds: tuple[str, ...] = ("rect", "ellipse", "blob"),
    real_prob: float = 0.6,
) -> Occluder:
    """A textured occluder hiding a fraction of the body silhouette drawn from ``coverage``
    (the Occ protocol's 10-40% by default). The shape is centred on a random body pixel and its
    size is found by bisection on the achieved coverage; the result lies within the range up to
    the shape's discreteness (checked; the closest attempt is returned otherwise). The texture is
    a real image crop from ``bank`` with probability ``real_prob`` (1.0 for the Occ protocol's
    real-texture occluders), else procedural."""
    sil = np.asarray(silhouette, bool)
    if sil.ndim != 2 or sil.shape[0] != sil.shape[1]:
        raise ValueError(f"silhouette must have shape [S, S], got {sil.shape}")
    lo_c, hi_c = coverage
    if not 0 <= lo_c <= hi_c <= 1:
        raise ValueError(f"coverage must be 0 <= lo <= hi <= 1, got {coverage}")
    S = sil.shape[0]
    area = int(sil.sum())
    if area == 0:
        raise ValueError("silhouette is empty")
    target = rng.uniform(lo_c, hi_c)
    kind = kinds[int(rng.integers(len(kinds)))]
    n = int(rng.integers(5, 11))
    params = {
        "aspect": math.exp(rng.uniform(-0.9, 0.9)),
        "angle": float(rng.uniform(0, 180)) if rng.random() < 0.5 else 0.0,
        "radii": rng.uniform(0.5, 1.0, n),
        "angles": np.sort(rng.uniform(0, 2 * math.pi, n)),
    }
    ys, xs = np.nonzero(sil)
    best = None
    for _ in range(4):  # a few centres: some cannot reach the target (thin limbs)
        i = int(rng.integers(area))
        centre = np.array([xs[i], ys[i]], np.float64) + rng.uniform(-0.5, 0.5, 2)
        lo, hi = 1.0, 2.5 * S
        for _ in range(14):
            mid = 0.5 * (lo + hi)
            m = _shape_mask(rng, kind, S, centre, mid, params)
            cov = float((m & sil).sum()) / area
            if best is None or abs(cov - target) < abs(best[1] - target):
                best = (m, cov)
            if lo_c <= cov <= hi_c and abs(cov - target) < 0.02:
                break
            if cov < target:
                lo = mid
            else:
                hi = mid
        if lo_c <= best[1] <= hi_c:
            break
    mask, cov = best
    tex = occluder_texture(rng, S, bank, real_prob)
    if rng.random() < 0.5:  # flat-ish occluders (a bag, a sign, a pole) are common too
        tex = (0.3 * tex + 0.7 * tex.reshape(-1, 3).mean(0)).astype(np.uint8)
    return Occluder(mask, tex, cov, kind)


def square_patch(
    image: np.ndarray,  # [S, S, 3] uint8
    x0: int,
    y0: int,
    side: int,
    texture: np.ndarray | None = None,  # [side, side, 3] or larger uint8
    value: tuple[int, int, int] = (128, 128, 128),
) -> tuple[np.ndarray, np.ndarray]:  # ([S, S, 3], [S, S] bool)
    """Paste a square patch with top-left corner ``(x0, y0)`` (pixels, may reach outside) and
    side ``side``: ``texture`` (cropped to the patch) or a flat ``value``. Returns the new image
    and the patch mask (AdvOcc protocol)."""
    img = np.array(image, copy=True)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must have shape [H, W, 3], got {img.shape}")
    if side <= 0:
        raise ValueError(f"side must be positive, got {side}")
    H, W = img.shape[:2]
    mask = np.zeros((H, W), bool)
    xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + side), min(H, y0 + side)
    if xb <= xa or yb <= ya:
        return img, mask
    mask[ya:yb, xa:xb] = True
    if texture is None:
        img[ya:yb, xa:xb] = np.asarray(value, np.uint8)
    else:
        t = np.asarray(texture)
        if t.ndim != 3 or t.shape[0] < side or t.shape[1] < side:
            raise ValueError(f"texture must have shape [>= {side}, >= {side}, 3], got {t.shape}")
        img[ya:yb, xa:xb] = t[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return img, mask


def advocc_positions(
    S: int, side: int = 40, stride: int = 10, base: int = 224
) -> tuple[int, list[tuple[int, int]]]:
    """AdvOcc grid for an ``S``-pixel crop: a patch of ``side`` and a ``stride`` given in
    ``base``-pixel units (the protocol's 224-px crops), scaled to S. Returns (side in pixels,
    top-left corners); n = ceil((base - side) / stride) + 1 positions per axis, the last ones
    reaching past the crop edge (400 positions for side 40, 256 for side 80)."""
    if not 0 < side <= base or stride <= 0:
        raise ValueError(f"need 0 < side <= base and stride > 0, got {side}, {stride}, {base}")
    n = math.ceil((base - side) / stride) + 1
    k = S / base
    px = round(side * k)
    xs = [round(i * stride * k) for i in range(n)]
    return px, [(x, y) for y in xs for x in xs]


def apply_occluder(image: np.ndarray, occ: Occluder) -> np.ndarray:  # [S, S, 3] -> [S, S, 3]
    """Composite an occluder over an image (1-pixel soft edge)."""
    a = cv2.GaussianBlur(occ.mask.astype(np.float32), (3, 3), 0.6)[..., None]
    out = image.astype(np.float32) * (1 - a) + occ.rgb.astype(np.float32) * a
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
