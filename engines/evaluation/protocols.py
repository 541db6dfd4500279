"""Evaluation protocols (DESIGN.md s4): clean, Occ, AdvOcc@40 and AdvOcc@80 sample construction.

- ``clean``: the crop as rendered.
- ``occ``: one random textured occluder (real held-out image crops or procedural patterns)
  covering 10-40% of the body silhouette (``engines.synth.occluders.random_occluder``). Occluded
  joints stay in the metrics (as on 3DPW-Occ, where the occluders are real objects).
- ``advocc40`` / ``advocc80``: a square textured patch of side 40 / 80 in 224-pixel crop units,
  slid over the crop on the released code's grid: ``n = ceil((224 - side) / 10 + 1)`` positions
  per axis (20 x 20 = 400 and 16 x 16 = 256), top-left corners ``i * stride`` with, at crop size
  S, ``side = round(side224 * S / 224)`` and ``stride = round(10 * S / 224)``; the last rows may
  reach past the crop edge, as in the original. Per image the position where the regression head's
  MPJPE is worst is kept (:func:`worst_case`); joints under the patch are invisible there.

Visibility everywhere also drops joints whose projection falls outside the crop (the released
code's ``eval_visible_joints``). Pixel conventions: docs/conventions.md (pixel (i, j) centred at
(u, v) = (j, i)); a joint is under the patch when its rounded pixel is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engines.synth.backgrounds import BackgroundBank
from engines.synth.occluders import (
    apply_occluder,
    occluder_texture,
    random_occluder,
    square_patch,
)

__all__ = [
    "ADVOCC_SIDES",
    "PROTOCOLS",
    "AdvOccGrid",
    "advocc_grid",
    "advocc_images",
    "joints_in_crop",
    "joints_under_mask",
    "joints_under_patch",
    "occ_sample",
    "patch_texture",
    "worst_case",
]

PROTOCOLS = ("clean", "occ", "advocc40", "advocc80")
ADVOCC_SIDES = {"advocc40": 40, "advocc80": 80}
_REF_SIZE = 224  # the protocol's crop units
_REF_STRIDE = 10


@dataclass(frozen=True)
class AdvOccGrid:
    """Patch side and top-left corners ``positions [N, 2]`` (x0, y0) in crop pixels."""

    side: int
    stride: int
    positions: np.ndarray  # [N, 2] int


def advocc_grid(size: int, side224: int, step: int = 1) -> AdvOccGrid:
    """The AdvOcc grid at crop size ``size`` for a patch of ``side224`` (224-px units).

    ``step`` > 1 keeps every ``step``-th row and column (a coarser search, for quick runs)."""
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if not 0 < side224 <= _REF_SIZE:
        raise ValueError(f"side224 must be in (0, {_REF_SIZE}], got {side224}")
    if step < 1:
        raise ValueError(f"step must be >= 1, got {step}")
    n = math.ceil((_REF_SIZE - side224) / _REF_STRIDE + 1)
    side = max(1, round(side224 * size / _REF_SIZE))
    stride = max(1, round(_REF_STRIDE * size / _REF_SIZE))
    ticks = np.arange(0, n, step) * stride
    yy, xx = np.meshgrid(ticks, ticks, indexing="ij")
    pos = np.stack([xx.reshape(-1), yy.reshape(-1)], axis=1).astype(np.int64)
    return AdvOccGrid(side=side, stride=stride, positions=pos)


def joints_in_crop(joints2d: np.ndarray, size: int) -> np.ndarray:  # [..., J, 2] -> [..., J]
    """Projection inside the ``size x size`` crop (u, v in [-0.5, size - 0.5))."""
    j = np.asarray(joints2d)
    if j.shape[-1] != 2:
        raise ValueError(f"joints2d must be [..., J, 2], got {j.shape}")
    return ((j >= -0.5) & (j < size - 0.5)).all(axis=-1)


def _pixels(joints2d: np.ndarray, size: int) -> np.ndarray:  # NaN (unknown) -> pixel 0
    j = np.nan_to_num(np.asarray(joints2d, np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.round(j), 0, size - 1).astype(np.int64)


def joints_under_mask(joints2d: np.ndarray, mask: np.ndarray) -> np.ndarray:  # [J,2],[S,S] -> [J]
    """Joints inside the crop whose rounded pixel is covered by ``mask``."""
    m = np.asarray(mask, bool)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"mask must be [S, S], got {m.shape}")
    S = m.shape[0]
    p = _pixels(joints2d, S)
    return m[p[:, 1], p[:, 0]] & joints_in_crop(joints2d, S)


def joints_under_patch(
    joints2d: np.ndarray,  # [J, 2] crop pixels
    positions: np.ndarray,  # [N, 2] (x0, y0)
    side: int,
    size: int,
) -> np.ndarray:  # -> [N, J] bool
    """For every patch position, the joints (inside the crop) under the square patch."""
    p = _pixels(joints2d, size)  # [J, 2]
    pos = np.asarray(positions, np.int64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"positions must be [N, 2], got {pos.shape}")
    lo = pos[:, None, :]  # [N, 1, 2]
    under = ((p[None] >= lo) & (p[None] < lo + side)).all(axis=-1)
    return under & joints_in_crop(joints2d, size)[None]


def advocc_images(
    image: np.ndarray,  # [S, S, 3] uint8
    grid: AdvOccGrid,
    texture: np.ndarray,  # [side, side, 3] uint8
    index: np.ndarray | None = None,  # [n] subset of grid positions
) -> np.ndarray:  # -> [n, S, S, 3] uint8
    """The crop with the textured patch pasted at each grid position (or at ``index``)."""
    pos = grid.positions if index is None else grid.positions[np.asarray(index)]
    out = np.empty((len(pos), *image.shape), np.uint8)
    for i, (x0, y0) in enumerate(pos):
        out[i], _ = square_patch(image, int(x0), int(y0), grid.side, texture)
    return out


def patch_texture(rng: np.random.Generator, side: int, bank: BackgroundBank | None) -> np.ndarray:
    """A held-out texture for the AdvOcc patch (``[side, side, 3]`` uint8): a real image crop of
    ``bank`` or a procedural pattern (``engines.synth.occluders.occluder_texture``)."""
    return occluder_texture(rng, side, bank)


def occ_sample(
    rng: np.random.Generator,
    image: np.ndarray,  # [S, S, 3] uint8
    silhouette: np.ndarray,  # [S, S] bool
    bank: BackgroundBank | None,
    coverage: tuple[float, float] = (0.1, 0.4),
) -> tuple[np.ndarray, np.ndarray, float]:  # ([S, S, 3], mask [S, S], coverage)
    """Occ protocol: composite a random occluder hiding ``coverage`` of the silhouette."""
    sil = np.asarray(silhouette, bool)
    if not sil.any():
        return np.array(image, copy=True), np.zeros_like(sil), 0.0
    occ = random_occluder(rng, sil, coverage, bank)
    return apply_occluder(image, occ), occ.mask, float(occ.coverage)


def worst_case(errors: np.ndarray) -> int:  # [N] -> index
    """Index of the largest error (NaN, e.g. no visible joint, never wins unless all are NaN)."""
    e = np.asarray(errors, np.float64)
    if e.ndim != 1 or len(e) == 0:
        raise ValueError(f"errors must be a non-empty [N] array, got {e.shape}")
    if np.isnan(e).all():
        return 0
    return int(np.nanargmax(e))
