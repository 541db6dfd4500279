"""Software z-buffer triangle rasteriser (no GPU/OpenGL), camera conventions of docs/conventions.md.

A pixel (row i, column j) samples the image at its centre (u, v) = (j, i). A triangle covers a pixel
when the pixel centre lies inside its screen projection (all screen-space barycentrics >= 0, edges
shared by two triangles are covered by both; the depth test picks one). Depth is interpolated
perspective-correctly (1/z is linear in screen space); the returned barycentrics are the
perspective-correct ones, usable to interpolate vertex attributes.

``rasterize`` is the fast version: per-face bounding boxes are expanded to candidate pixels,
tested with barycentrics, and resolved by a scatter-min over (depth bits, face id) int64 keys.
``rasterize_reference`` tests every pixel against every face (dense, for small meshes and tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["RasterOutput", "project_points", "rasterize", "rasterize_reference", "vertex_normals"]

#: Faces with a vertex closer than this (metres) are dropped (no near-plane clipping).
NEAR = 1e-3


@dataclass
class RasterOutput:
    """face_id ``[H, W]`` long (-1 = background), bary ``[H, W, 3]`` perspective-correct
    barycentrics (0 on background), depth ``[H, W]`` camera z (inf on background)."""

    face_id: torch.Tensor  # [H, W]
    bary: torch.Tensor  # [H, W, 3]
    depth: torch.Tensor  # [H, W]

    @property
    def mask(self) -> torch.Tensor:  # [H, W] bool
        return self.face_id >= 0


def _check(vertices: torch.Tensor, faces: torch.Tensor, K: torch.Tensor, size) -> tuple[int, int]:
    if not isinstance(vertices, torch.Tensor) or vertices.dim() != 2 or vertices.shape[1] != 3:
        raise ValueError("vertices must be a float tensor [V, 3] in camera coordinates")
    if not vertices.is_floating_point():
        raise ValueError("vertices must be a float tensor [V, 3]")
    if not isinstance(faces, torch.Tensor) or faces.dim() != 2 or faces.shape[1] != 3:
        raise ValueError("faces must be a long tensor [F, 3]")
    if faces.dtype != torch.long:
        raise ValueError(f"faces must be torch.long [F, 3], got {faces.dtype}")
    if not isinstance(K, torch.Tensor) or K.shape != (3, 3):
        raise ValueError("K must be a tensor [3, 3]")
    if len(size) != 2 or any(int(s) <= 0 for s in size):
        raise ValueError(f"size must be (H, W) with positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def project_points(points: torch.Tensor, K: torch.Tensor) -> torch.Tensor:  # [..., 3] -> [..., 2]
    """Pinhole projection (u, v) = (fx x / z + cx, fy y / z + cy) with ``K [3, 3]`` (or ``[B, 3,
    3]`` for points ``[B, N, 3]``)."""
    if points.shape[-1] != 3:
        raise ValueError(f"points must have shape [..., 3], got {tuple(points.shape)}")
    if K.dim() == 3:
        fx, fy, cx, cy = (K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2])
        shp = (K.shape[0],) + (1,) * (points.dim() - 2)
        fx, fy, cx, cy = (t.reshape(shp) for t in (fx, fy, cx, cy))
    else:
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    z = points[..., 2]
    return torch.stack([fx * points[..., 0] / z + cx, fy * points[..., 1] / z + cy], dim=-1)


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:  # -> [V, 3]
    """Area-weighted unit vertex normals of ``vertices [V, 3]``, ``faces [F, 3]``."""
    v0, v1, v2 = (vertices[faces[:, i]] for i in range(3))
    fn = torch.linalg.cross(v1 - v0, v2 - v0)  # [F, 3], |fn| = 2 area
    n = torch.zeros_like(vertices)
    for i in range(3):
        n.index_add_(0, faces[:, i], fn)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def _screen_bary(
    px: torch.Tensor,  # [N]
    py: torch.Tensor,  # [N]
    tri: torch.Tensor,  # [N, 3, 2] screen vertices
) -> tuple[torch.Tensor, torch.Tensor]:  # ([N, 3] screen barycentrics, [N] valid)
    x0, y0 = tri[:, 0, 0], tri[:, 0, 1]
    x1, y1 = tri[:, 1, 0], tri[:, 1, 1]
    x2, y2 = tri[:, 2, 0], tri[:, 2, 1]
    den = (y1 - y2) * (x0 - x2) + (x2 - x1) * (y0 - y2)
    ok = den.abs() > 1e-12
    den = torch.where(ok, den, torch.ones_like(den))
    b0 = ((y1 - y2) * (px - x2) + (x2 - x1) * (py - y2)) / den
    b1 = ((y2 - y0) * (px - x2) + (x0 - x2) * (py - y2)) / den
    b2 = 1.0 - b0 - b1
    return torch.stack([b0, b1, b2], dim=-1), ok


def _signed_area(tri: torch.Tensor) -> torch.Tensor:  # [F, 3, 2] -> [F]
    """Twice the signed screen area; negative for faces turned towards an OpenCV camera."""
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    return e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]


def _perspective(bs: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Screen barycentrics ``bs [N, 3]`` and vertex depths ``z [N, 3]`` -> (depth [N],
    perspective-correct barycentrics [N, 3])."""
    w = bs / z
    inv = w.sum(-1)
    return 1.0 / inv, w / inv[:, None]


def rasterize_reference(
    vertices: torch.Tensor,  # [V, 3] camera coordinates
    faces: torch.Tensor,  # [F, 3] long
    K: torch.Tensor,  # [3, 3]
    size: tuple[int, int],  # (H, W)
    cull_backfaces: bool = False,
) -> RasterOutput:
    """Dense reference: every pixel against every face, nearest covering face wins (ties -> lowest
    face id). Memory O(H W F): for small meshes and tests."""
    H, W = _check(vertices, faces, K, size)
    v = vertices.double()
    uv = project_points(v, K.double())
    tri = uv[faces]  # [F, 3, 2]
    keep = (v[faces, 2] > NEAR).all(1)  # [F]
    if cull_backfaces:
        keep &= _signed_area(tri) < 0
    zf = v[faces, 2]  # [F, 3]
    ii, jj = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    P, F = H * W, faces.shape[0]
    px = jj.reshape(-1, 1).double().expand(P, F).reshape(-1)
    py = ii.reshape(-1, 1).double().expand(P, F).reshape(-1)
    bs, ok = _screen_bary(px, py, tri[None].expand(P, F, 3, 2).reshape(-1, 3, 2))
    inside = ok & (bs >= 0).all(-1) & keep[None].expand(P, F).reshape(-1)
    depth, bp = _perspective(bs, zf[None].expand(P, F, 3).reshape(-1, 3))
    depth = torch.where(inside, depth, torch.full_like(depth, float("inf"))).view(P, F)
    best, fid = depth.min(dim=1)  # first minimum = lowest face id
    hit = torch.isfinite(best)
    fid = torch.where(hit, fid, torch.full_like(fid, -1))
    bary = bp.view(P, F, 3).gather(1, fid.clamp(min=0).view(P, 1, 1).expand(P, 1, 3))[:, 0]
    bary = torch.where(hit[:, None], bary, torch.zeros_like(bary))
    dt = vertices.dtype
    return RasterOutput(fid.view(H, W), bary.view(H, W, 3).to(dt), best.view(H, W).to(dt))


def rasterize(
    vertices: torch.Tensor,  # [V, 3] camera coordinates
    faces: torch.Tensor,  # [F, 3] long
    K: torch.Tensor,  # [3, 3]
    size: tuple[int, int],  # (H, W)
    cull_backfaces: bool = False,
) -> RasterOutput:
    """Fast z-buffer rasteriser: same result as ``rasterize_reference`` (see module docstring).

    ``cull_backfaces`` drops faces whose screen projection is clockwise in image coordinates,
    i.e. faces turned away from the camera for outward-wound meshes whose faces are
    counter-clockwise seen from outside in a right-handed frame (the body model's are). Safe
    for closed meshes, about halves the work."""
    H, W = _check(vertices, faces, K, size)
    dev = vertices.device
    v = vertices.detach().to(torch.float64)
    uv = project_points(v, K.detach().to(torch.float64, copy=False))  # [V, 2]
    zf = v[faces, 2]  # [F, 3]
    tri = uv[faces]  # [F, 3, 2]
    lo = tri.amin(1)
    hi = tri.amax(1)
    x0 = lo[:, 0].ceil().clamp(min=0)
    x1 = hi[:, 0].floor().clamp(max=W - 1)
    y0 = lo[:, 1].ceil().clamp(min=0)
    y1 = hi[:, 1].floor().clamp(max=H - 1)
    keep = (zf > NEAR).all(1) & (x1 >= x0) & (y1 >= y0)
    if cull_backfaces:
        keep &= _signed_area(tri) < 0
    fids = keep.nonzero().squeeze(1)
    x0, x1, y0, y1 = (t[fids].long() for t in (x0, x1, y0, y1))
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    counts = nx * ny
    total = int(counts.sum())
    face_id = torch.full((H, W), -1, dtype=torch.long, device=dev)
    if total == 0:
        return RasterOutput(
            face_id,
            torch.zeros(H, W, 3, dtype=vertices.dtype, device=dev),
            torch.full((H, W), float("inf"), dtype=vertices.dtype, device=dev),
        )
    owner = torch.repeat_interleave(torch.arange(len(fids), device=dev), counts)  # [N]
    start = torch.cumsum(counts, 0) - counts
    local = torch.arange(total, device=dev) - start[owner]
    nxo = nx[owner]
    px = x0[owner] + local % nxo
    py = y0[owner] + local // nxo
    f = fids[owner]
    bs, ok = _screen_bary(px.double(), py.double(), tri[f])
    inside = ok & (bs >= 0).all(-1)
    px, py, f, bs = px[inside], py[inside], f[inside], bs[inside]
    depth, _ = _perspective(bs, zf[f])
    # Positive float32 depths order like their int32 bit patterns; ties -> lowest face id.
    dbits = depth.float().contiguous().view(torch.int32).long()
    key = (dbits << 32) | f
    pix = py * W + px
    best = torch.full((H * W,), torch.iinfo(torch.long).max, dtype=torch.long, device=dev)
    best.scatter_reduce_(0, pix, key, reduce="amin")
    hit = best != torch.iinfo(torch.long).max
    fid = torch.where(hit, best & 0xFFFFFFFF, torch.full_like(best, -1))
    face_id = fid.view(H, W)
    # Exact barycentrics and depth of the winning faces (float64, then cast).
    hp = hit.nonzero().squeeze(1)
    hf = fid[hp]
    bs_w, _ = _screen_bary((hp % W).double(), (hp // W).double(), tri[hf])
    d_w, b_w = _perspective(bs_w, zf[hf])
    bary = torch.zeros(H * W, 3, dtype=torch.float64, device=dev)
    dep = torch.full((H * W,), float("inf"), dtype=torch.float64, device=dev)
    bary[hp] = b_w
    dep[hp] = d_w
    dt = vertices.dtype
    return RasterOutput(face_id, bary.view(H, W, 3).to(dt), dep.view(H, W).to(dt))
