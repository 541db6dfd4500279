"""Test meshes: an icosphere with outward (counter-clockwise from outside) winding."""

from __future__ import annotations

import math

import torch


def icosphere(level: int = 2, radius: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Vertices [V, 3] float64 on a sphere of ``radius`` at the origin, faces [F, 3] long."""
    t = (1 + math.sqrt(5)) / 2
    v = [(-1, t, 0), (1, t, 0), (-1, -t, 0), (1, -t, 0), (0, -1, t), (0, 1, t), (0, -1, -t),
         (0, 1, -t), (t, 0, -1), (t, 0, 1), (-t, 0, -1), (-t, 0, 1)]  # fmt: skip
    f = [(0, 11, 5), (0, 5, 1), (0, 1, 7), (0, 7, 10), (0, 10, 11), (1, 5, 9), (5, 11, 4),
         (11, 10, 2), (10, 7, 6), (7, 1, 8), (3, 9, 4), (3, 4, 2), (3, 2, 6), (3, 6, 8),
         (3, 8, 9), (4, 9, 5), (2, 4, 11), (6, 2, 10), (8, 6, 7), (9, 8, 1)]  # fmt: skip
    verts = [tuple(c / math.sqrt(1 + t * t) for c in p) for p in v]
    for _ in range(level):
        cache: dict[tuple[int, int], int] = {}

        def mid(a: int, b: int, cache: dict = cache) -> int:
            key = (min(a, b), max(a, b))
            if key not in cache:
                p = [(x + y) / 2 for x, y in zip(verts[a], verts[b])]
                n = math.sqrt(sum(c * c for c in p))
                verts.append(tuple(c / n for c in p))
                cache[key] = len(verts) - 1
            return cache[key]

        nf = []
        for a, b, c in f:
            ab, bc, ca = mid(a, b), mid(b, c), mid(c, a)
            nf += [(a, ab, ca), (b, bc, ab), (c, ca, bc), (ab, bc, ca)]
        f = nf
    vt = torch.tensor(verts, dtype=torch.float64) * radius
    ft = torch.tensor(f, dtype=torch.long)
    # make the winding outward: (v1 - v0) x (v2 - v0) points away from the centre
    v0, v1, v2 = (vt[ft[:, i]] for i in range(3))
    inward = (torch.linalg.cross(v1 - v0, v2 - v0) * v0).sum(1) < 0
    ft[inward] = ft[inward][:, [0, 2, 1]]
    return vt, ft
