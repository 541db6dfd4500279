import math

import cv2
import numpy as np
import pytest
import torch

from engines.render import TAU, Camera, render
from engines.render.common import DEFAULT_PRECISION
from engines.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from engines.synth.appearance import sample_appearance
from engines.synth.raster import rasterize, vertex_normals
from engines.synth.scene import BodyRenderer


@pytest.fixture(scope="module")
def renderer():
    return BodyRenderer()


def _params(yaw: float, depth: float = 4.0) -> dict:
    """Upright body (arms lowered) rotated by ``yaw`` about the vertical, ``depth`` m away."""
    R = axis_angle_to_matrix(torch.tensor([[math.pi, 0.0, 0.0]]))
    R = R @ axis_angle_to_matrix(torch.tensor([[0.0, yaw, 0.0]]))
    bp = torch.zeros(1, 69)
    bp[0, 15 * 3 + 2] = -1.1  # left shoulder (joint 16) down
    bp[0, 16 * 3 + 2] = 1.1  # right shoulder (joint 17) down
    return {
        "global_orient": matrix_to_axis_angle(R).float(),
        "body_pose": bp,
        "betas": torch.zeros(1, 10),
        "transl": torch.tensor([[0.0, 0.25, depth]]),
    }


def _intr(S: int, f: float) -> np.ndarray:
    return np.array([[f, 0, (S - 1) / 2], [0, f, (S - 1) / 2], [0, 0, 1]])


@pytest.mark.parametrize("yaw", [0.0, math.pi / 2])
def test_silhouette_agrees_with_nbv(renderer, yaw):
    """The NBV coverage mask (a kernel within the candidate threshold act < TAU) is the set of
    pixels whose ray passes within sqrt(TAU / a) = 7.6 cm of a kernel centre: the rasterised
    mesh silhouette dilated by that reach (in pixels at the body's depth). Measured IoU ~0.98
    at 256 px (kernels are ~5 cm apart on the surface, so the dilated mask slightly exceeds the
    union of kernel discs); every silhouette pixel must be covered."""
    S, f = 256, 560.0
    p = _params(yaw)
    verts, _ = renderer.pose(**p)
    K = _intr(S, f)
    sil = rasterize(verts, renderer.faces, torch.as_tensor(K, dtype=torch.float32), (S, S)).mask
    sil = sil.numpy()
    nb = render(verts[renderer.nbv.kernel_ids][None], Camera(f, f, K[0, 2], K[1, 2], S, S), M=1)
    cover = nb.mask[0].numpy()
    assert (sil & cover).sum() / sil.sum() > 0.995
    reach_px = f * math.sqrt(TAU / DEFAULT_PRECISION) / float(verts[:, 2].mean())
    dist = cv2.distanceTransform((~sil).astype(np.uint8), cv2.DIST_L2, 5)
    dil = dist <= reach_px
    iou = (dil & cover).sum() / (dil | cover).sum()
    assert iou > 0.95, iou


def test_render_crop_ground_truth(renderer):
    S = 128
    p = _params(0.3)
    K = _intr(S, 250.0)
    app = sample_appearance(np.random.default_rng(0), "train")
    bg = np.full((S, S, 3), 90, np.uint8)
    r = renderer.render_crop(p, K, S, app, bg)
    assert r.image.shape == (S, S, 3) and r.silhouette.any()
    assert ((r.part_map > 0) == r.silhouette).all()
    assert r.part_map.max() <= 24
    # background pixels away from the body keep the background colour
    far = cv2.dilate(r.silhouette.astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
    assert (r.image[far] == 90).all()
    # joints2d is the projection of joints3d
    j = r.joints3d.astype(np.float64)
    uv = np.stack([K[0, 0] * j[:, 0] / j[:, 2] + K[0, 2], K[1, 1] * j[:, 1] / j[:, 2] + K[1, 2]], 1)
    np.testing.assert_allclose(r.joints2d, uv, atol=1e-3)
    # the head part sits around the head joint
    head = np.argwhere(r.part_map == 16).mean(0)
    assert np.linalg.norm(head[::-1] - r.joints2d[15]) < 8
    assert r.kernel_front.shape == (S // 4, S // 4)
    assert r.kernel_bin.shape == r.kernel_visible.shape == (renderer.nbv.num_kernels,)


def test_side_view_hides_far_side_kernels(renderer):
    """Seen from the body's right (yaw = pi/2 turns the left side away from the camera), kernels
    whose surface faces away from the camera are not front-most anywhere. Not every kernel
    facing the camera is front-most either: at 48 x 48 feature pixels the body covers fewer
    pixels than it has camera-facing kernels."""
    S = 192
    p = _params(math.pi / 2)
    K = _intr(S, 420.0)
    app = sample_appearance(np.random.default_rng(0), "train")
    r = renderer.render_crop(p, K, S, app, np.zeros((S, S, 3), np.uint8))
    verts = torch.as_tensor(r.vertices)
    n = vertex_normals(verts, renderer.faces)[renderer.nbv.kernel_ids]
    kv = verts[renderer.nbv.kernel_ids]
    view = kv / kv.norm(dim=1, keepdim=True)
    cos = (n * view).sum(1).numpy()  # > 0: facing away from the camera
    vis = r.kernel_visible
    assert vis[cos > 0.5].mean() < 0.05
    assert vis[cos < -0.5].mean() > 0.25
    limb = renderer.nbv.kernel_limb.numpy()
    right_arm = np.isin(limb, [3, 4])
    left_arm = np.isin(limb, [1, 2])
    assert vis[right_arm].mean() > 3 * vis[left_arm].mean()
