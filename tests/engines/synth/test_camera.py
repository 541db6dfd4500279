import math

import numpy as np
import pytest
import torch

from engines.body import BodyModel
from engines.rotations import axis_angle_to_matrix
from engines.synth.camera import (
    CameraRanges,
    crop_intrinsics,
    feature_intrinsics,
    look_at,
    sample_crop_window,
    sample_frame_camera,
    to_camera,
)
from engines.synth.raster import project_points


@pytest.fixture(scope="module")
def body():
    return BodyModel.default()


def test_look_at_front_camera_gives_pi_about_x():
    """A camera in front of a body that faces +z: world -> camera is R_x(pi)."""
    R = look_at(np.array([0.0, 0.0, 5.0]), np.zeros(3))
    np.testing.assert_allclose(R, np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)


def test_to_camera_is_exact(body):
    """Posing with the camera-frame parameters equals moving the world-frame body."""
    rng = np.random.default_rng(3)
    go = torch.tensor(rng.normal(0, 0.5, (2, 3)), dtype=torch.float32)
    bp = torch.tensor(rng.normal(0, 0.2, (2, 69)), dtype=torch.float32)
    be = torch.tensor(rng.normal(0, 1, (2, 10)), dtype=torch.float32)
    tr = torch.tensor(rng.normal(0, 1, (2, 3)), dtype=torch.float32)
    cam, _ = sample_frame_camera(rng, np.array([0.0, 1.0, 0.0]))
    w = body(go, bp, be, tr)
    go_c, t_c = to_camera(cam.R, cam.centre, go, tr, body.rest_joints(be)[:, 0])
    c = body(go_c, bp, be, t_c)
    R = torch.as_tensor(cam.R, dtype=torch.float32)
    expect = (w.joints - torch.as_tensor(cam.centre, dtype=torch.float32)) @ R.T
    torch.testing.assert_close(c.joints, expect, atol=2e-5, rtol=0)


def test_upright_body_facing_camera_has_pi_orient(body):
    cam_R = look_at(np.array([0.0, 0.9, 4.0]), np.array([0.0, 0.9, 0.0]))
    go_c, _ = to_camera(cam_R, np.array([0.0, 0.9, 4.0]), torch.zeros(1, 3), torch.zeros(1, 3),
                        body.rest_joints()[:, 0])  # fmt: skip
    R = axis_angle_to_matrix(go_c.double())[0]
    torch.testing.assert_close(R, torch.diag(torch.tensor([1.0, -1.0, -1.0])).double(),
                               atol=1e-6, rtol=0)  # fmt: skip


def test_sampled_cameras_within_ranges():
    r = CameraRanges()
    for s in range(50):
        rng = np.random.default_rng(s)
        target = np.array([0.3, 0.9, -1.0])
        cam, info = sample_frame_camera(rng, target, r)
        assert r.distance[0] <= info["distance"] <= r.distance[1]
        assert math.radians(r.hfov_deg[0]) <= info["hfov"] <= math.radians(r.hfov_deg[1])
        assert np.linalg.norm(cam.centre - target) == pytest.approx(info["distance"])
        # the target projects inside the frame
        x = cam.R @ (target - cam.centre)
        u, v = cam.K[0, 0] * x[0] / x[2] + cam.K[0, 2], cam.K[1, 1] * x[1] / x[2] + cam.K[1, 2]
        assert x[2] > 0 and 0 <= u < cam.width and 0 <= v < cam.height


def test_crop_intrinsics_map_frame_pixels_to_crop_pixels():
    K = np.array([[800.0, 0, 639.5], [0, 800.0, 359.5], [0, 0, 1]])
    win = (700.0, 300.0, 250.0)
    S = 192
    Kc = crop_intrinsics(K, win, S)
    X = torch.tensor([[0.3, -0.2, 4.0], [-0.1, 0.4, 3.0]], dtype=torch.float64)
    uv = project_points(X, torch.as_tensor(K))
    uvc = project_points(X, torch.as_tensor(Kc))
    expect = (uv - torch.tensor([win[0] - win[2] / 2, win[1] - win[2] / 2])) * S / win[2] - 0.5
    torch.testing.assert_close(uvc, expect.double())


def test_feature_intrinsics_pixel_centres():
    K = torch.tensor([[500.0, 0, 95.5], [0, 500.0, 95.5], [0, 0, 1]])
    Kf = feature_intrinsics(K, 4)
    assert isinstance(Kf, torch.Tensor) and float(Kf[0, 0]) == 125.0
    # a point seen at crop pixel 4 i + 1.5 (centre of block i) is seen at feature pixel i
    u = torch.tensor([1.5, 41.5, 189.5], dtype=torch.float64)
    X = torch.stack([(u - 95.5) / 500.0 * 3, (u - 95.5) / 500.0 * 3, torch.full_like(u, 3)], 1)
    uvf = project_points(X, Kf.double())
    torch.testing.assert_close(uvf[:, 0], torch.tensor([0.0, 10.0, 47.0], dtype=torch.float64))
    Kn = feature_intrinsics(K.numpy(), 4)
    np.testing.assert_allclose(Kn, Kf.numpy().astype(np.float64), rtol=1e-6)


def test_crop_window_contains_body_unless_truncated():
    rng = np.random.default_rng(0)
    pts = rng.uniform([100, 50], [180, 300], (500, 2))
    for s in range(30):
        bx, by, side = sample_crop_window(np.random.default_rng(s), pts)
        assert 1.1 * 250 * 0.99 <= side <= 1.4 * 250 * 1.01
        inside = (np.abs(pts[:, 0] - bx) <= side / 2) & (np.abs(pts[:, 1] - by) <= side / 2)
        assert inside.mean() > 0.97
    fr = []
    for s in range(30):
        bx, by, side = sample_crop_window(np.random.default_rng(s), pts, truncate=0.25)
        inside = (np.abs(pts[:, 0] - bx) <= side / 2) & (np.abs(pts[:, 1] - by) <= side / 2)
        fr.append(1 - inside.mean())
    assert 0.05 < np.median(fr) < 0.6
