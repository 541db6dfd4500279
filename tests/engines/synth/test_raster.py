import math

import numpy as np
import pytest
import torch

from engines.synth.raster import (
    project_points,
    rasterize,
    rasterize_reference,
    vertex_normals,
)

from ._mesh import icosphere


def _intr(f: float, S: int) -> torch.Tensor:
    return torch.tensor([[f, 0, (S - 1) / 2], [0, f, (S - 1) / 2], [0, 0, 1]], dtype=torch.float64)


def _two_spheres() -> tuple[torch.Tensor, torch.Tensor]:
    va, fa = icosphere(2, 0.5)
    vb, fb = icosphere(2, 0.35)
    va = va + torch.tensor([0.1, 0.05, 3.0], dtype=torch.float64)
    vb = vb + torch.tensor([-0.3, -0.2, 2.5], dtype=torch.float64)  # in front, overlapping
    return torch.cat([va, vb]), torch.cat([fa, fb + len(va)])


def test_sphere_matches_analytic_disc():
    """An on-axis sphere of radius r at depth d projects to a disc of radius f r / sqrt(d^2 -
    r^2); a level-4 icosphere is inscribed within 0.1% of the radius, so IoU > 0.98."""
    v, f = icosphere(4, 0.4)
    d, S, foc = 3.0, 160, 400.0
    v = v + torch.tensor([0.0, 0.0, d], dtype=torch.float64)
    K = _intr(foc, S)
    out = rasterize(v, f, K, (S, S))
    rho = foc * 0.4 / math.sqrt(d * d - 0.4 * 0.4)
    ii, jj = np.mgrid[0:S, 0:S]
    c = (S - 1) / 2
    disc = (ii - c) ** 2 + (jj - c) ** 2 <= rho**2
    m = out.mask.numpy()
    iou = (m & disc).sum() / (m | disc).sum()
    assert iou > 0.98, iou
    # the front point of the sphere is the nearest depth, at d - r
    assert out.depth.min().item() == pytest.approx(d - 0.4, abs=2e-3)


def test_fast_matches_reference():
    v, f = _two_spheres()
    K = _intr(60.0, 40)
    a = rasterize(v, f, K, (40, 40))
    b = rasterize_reference(v, f, K, (40, 40))
    assert torch.equal(a.mask, b.mask)
    same = a.face_id == b.face_id
    # ties on shared edges may pick either face: then the depths agree
    assert same.float().mean() > 0.99
    hit = b.mask
    torch.testing.assert_close(a.depth[hit], b.depth[hit], rtol=0, atol=1e-6)
    torch.testing.assert_close(a.bary[same & hit], b.bary[same & hit], rtol=0, atol=1e-9)
    # the nearer sphere hides the farther one where they overlap
    nf = len(icosphere(2)[1])
    assert (a.face_id[hit] >= nf).any() and (a.face_id[hit] < nf).any()


def test_backface_culling_keeps_closed_mesh_identical():
    v, f = _two_spheres()
    K = _intr(60.0, 40)
    a = rasterize(v, f, K, (40, 40))
    b = rasterize(v, f, K, (40, 40), cull_backfaces=True)
    c = rasterize_reference(v, f, K, (40, 40), cull_backfaces=True)
    assert torch.equal(a.mask, b.mask)
    torch.testing.assert_close(a.depth[a.mask], b.depth[b.mask], rtol=0, atol=1e-6)
    assert torch.equal(b.mask, c.mask)


def test_barycentrics_are_perspective_correct():
    """Interpolating camera-space vertices with the returned barycentrics gives points that
    project onto the pixel centres, at the returned depth."""
    v, f = _two_spheres()
    S = 48
    K = _intr(70.0, S)
    out = rasterize(v, f, K, (S, S))
    hit = out.mask
    tri = f[out.face_id[hit]]
    p = (out.bary[hit][..., None] * v[tri]).sum(1)
    uv = project_points(p, K)
    ii, jj = torch.nonzero(hit, as_tuple=True)
    torch.testing.assert_close(uv[:, 0], jj.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(uv[:, 1], ii.double(), rtol=0, atol=1e-6)
    torch.testing.assert_close(p[:, 2], out.depth[hit], rtol=0, atol=1e-9)


def test_vertex_normals_of_sphere_point_outward():
    v, f = icosphere(3, 2.0)
    n = vertex_normals(v, f)
    cos = (n * v / v.norm(dim=1, keepdim=True)).sum(1)
    assert cos.min() > 0.999


def test_empty_and_behind_camera():
    v, f = icosphere(1, 0.5)
    K = _intr(50.0, 16)
    out = rasterize(v - torch.tensor([0, 0, 3.0], dtype=torch.float64), f, K, (16, 16))
    assert not out.mask.any() and torch.isinf(out.depth).all()


def test_input_checks():
    v, f = icosphere(1)
    with pytest.raises(ValueError, match="vertices"):
        rasterize(v[:, :2], f, _intr(10, 8), (8, 8))
    with pytest.raises(ValueError, match="faces"):
        rasterize(v, f.int(), _intr(10, 8), (8, 8))
    with pytest.raises(ValueError, match="K"):
        rasterize(v, f, torch.eye(4), (8, 8))
