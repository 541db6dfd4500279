"""Synthetic kernel sets for the renderer tests."""

from __future__ import annotations

import torch

from engines.render import Camera


def blob(K: int, z: float, seed: int, B: int = 1, dtype=torch.float64) -> torch.Tensor:
    """K centres on an ellipsoid surface (0.3 x 0.8 x 0.15 m half-axes) at depth z: [B, K, 3]."""
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(B, K, 3, generator=g, dtype=torch.float64)
    v = v / v.norm(dim=-1, keepdim=True) * torch.tensor([0.3, 0.8, 0.15], dtype=torch.float64)
    v[..., 2] += z
    v[..., 0] += 0.05 * torch.arange(B, dtype=torch.float64)[:, None]
    return v.to(dtype)


def crop_camera(size: int = 80, f: float = 1250.0, c: float = 39.5) -> Camera:
    return Camera(f, f, c, c, size, size)
