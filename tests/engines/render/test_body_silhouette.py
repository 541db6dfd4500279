"""The NBV render of a posed body against a rasterised projection of its mesh."""

import math

import cv2
import numpy as np
import pytest
import torch

from engines.body import BodyModel
from engines.nbv import NeuralBodyVolume
from engines.render import TAU, Camera, render

F, C0, SIZE = 1250.0, 39.5, 80  # the fitting map: 80 x 80, f = 1250 px


@pytest.fixture(scope="module")
def posed():
    body = BodyModel.default()
    nbv = NeuralBodyVolume(body)
    pose = torch.zeros(1, 69)
    pose[0, 3 * 15 + 2] = -1.0  # left shoulder (joint 16): arm 57 degrees down
    pose[0, 3 * 16 + 2] = 1.0  # right shoulder (joint 17)
    pose[0, 3 * 0 + 0] = 0.3  # left hip forward
    args = (
        torch.tensor([[math.pi, 0.2, 0.0]]),  # standing, facing the camera, slightly turned
        pose,
        torch.zeros(1, 10),
        torch.tensor([[0.1, -0.34, 30.0]]),
    )
    verts = body(*args).vertices[0].double()
    centres, _ = nbv.pose(body, *args)
    return verts, body.faces.numpy(), centres.double()


def _rasterise(verts, faces):
    verts = verts.numpy()
    uv = np.stack([F * verts[:, 0] / verts[:, 2] + C0, F * verts[:, 1] / verts[:, 2] + C0], 1)
    img = np.zeros((SIZE, SIZE), np.uint8)
    pts = np.round(uv * 16).astype(np.int32)  # 4 fractional bits, pixel centres integer
    for f in faces:
        cv2.fillConvexPoly(img, pts[f], 1, lineType=cv2.LINE_8, shift=4)
    return img.astype(bool)


def _dilate(mask, radius):
    k = math.ceil(radius)
    yy, xx = np.mgrid[-k : k + 1, -k : k + 1]
    disc = (xx**2 + yy**2 <= radius**2 + 1e-9).astype(np.uint8)
    return cv2.dilate(mask.astype(np.uint8), disc).astype(bool)


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


def test_body_silhouette_matches_rasterised_mesh(posed):
    verts, faces, centres = posed
    camera = Camera(F, F, C0, C0, SIZE, SIZE)
    out = render(centres, camera, impl="fast")
    ref = render(centres, camera, impl="reference")
    assert torch.equal(out.idx, ref.idx)
    torch.testing.assert_close(out.weights, ref.weights, rtol=0, atol=1e-12)

    mesh = _rasterise(verts, faces)
    assert 500 < mesh.sum() < 3000
    mask = out.mask[0].numpy()
    sil = out.silhouette[0].numpy()
    # A kernel covers the pixels whose ray passes within sqrt(TAU / a) = 7.6 cm of its centre:
    # a disc of radius r = f sqrt(TAU / a) / z px (3.2 px at 30 m) around its projection. The
    # kernels sit on the surface, so the coverage mask is the mesh dilated by at most r (plus
    # half a pixel of rasterisation), and by at least r minus half the kernel spacing (~4.5 cm,
    # ~1 px) where the outline runs between kernels: measured IoU with the r-dilation 0.93.
    r = F * math.sqrt(TAU / 4000.0) / verts[:, 2].mean().item()
    outer = _dilate(mesh, r + 0.5)
    assert (mask & ~outer).sum() <= 0.005 * mask.sum()
    assert _iou(mask, _dilate(mesh, r)) > 0.85
    assert _iou(mask, _dilate(mesh, r)) > _iou(mask, mesh) + 0.2
    # The soft silhouette min(sum w, 1) peaks near kernel centres (w >= 0.5 within ~1.7 cm):
    # its core lies inside the mesh outline and it reaches (> 0.1) nearly all of the mesh.
    core = sil > 0.5
    assert (core & ~_dilate(mesh, 1.0)).sum() <= 0.01 * core.sum()
    assert ((sil > 0.1) & mesh).sum() >= 0.9 * mesh.sum()
    # Most kernels facing the camera are visible; most on the back are not.
    vis = out.visibility[0].numpy()
    assert 0.25 < vis.mean() < 0.75
