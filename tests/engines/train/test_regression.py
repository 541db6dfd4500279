import math

import pytest
import torch

from engines.rotations import axis_angle_to_matrix
from engines.train.regression import (
    RegressionWeights,
    regression_losses,
    weak_perspective_project,
    weak_perspective_to_transl,
)


def _camera(b, f=500.0, size=192):
    K = torch.zeros(b, 3, 3)
    K[:, 0, 0] = K[:, 1, 1] = f
    K[:, 0, 2] = K[:, 1, 2] = (size - 1) / 2
    K[:, 2, 2] = 1
    return K


def test_weak_perspective_depth_and_crop_centre():
    cam = torch.tensor([[0.5, 0.1, -0.2]])
    K = _camera(1, f=500.0, size=200)  # principal point at the crop centre
    t = weak_perspective_to_transl(cam, K, 200)
    assert torch.allclose(t, torch.tensor([[0.1, -0.2, 2 * 500 / (200 * 0.5)]]))
    # a crop whose principal point is elsewhere: the body origin still projects at
    # crop centre + f (tx, ty) / z, whatever the principal point
    K2 = K.clone()
    K2[0, 0, 2], K2[0, 1, 2] = 350.0, -80.0
    t2 = weak_perspective_to_transl(cam, K2, 200)
    uv = (K2[0] @ (t2[0] / t2[0, 2]))[:2]
    z = 2 * 500 / (200 * 0.5)
    assert torch.allclose(uv, torch.tensor([99.5 + 500 * 0.1 / z, 99.5 - 500 * 0.2 / z]), atol=1e-4)


def _gt(b=2, size=192, seed=0):
    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(0.3 * torch.randn(b, 24, 3, generator=g))
    joints = 0.5 * torch.randn(b, 24, 3, generator=g)
    cam = torch.tensor([[0.8, 0.05, -0.1]]).repeat(b, 1)
    K = _camera(b, size=size)
    transl = weak_perspective_to_transl(cam, K, size)
    j3d = joints + transl[:, None]
    # weak perspective about the crop centre (what the loss compares)
    uv = (size - 1) / 2 + size / 2 * weak_perspective_project(joints, cam)
    betas = torch.randn(b, 10, generator=g)
    return rot, betas, cam, joints, j3d, uv, K


def test_perfect_prediction_has_only_camera_prior():
    rot, betas, cam, joints, j3d, uv, K = _gt()
    out = regression_losses(
        rot, betas, cam, joints, rot, betas, j3d, uv, K, 192, RegressionWeights()
    )
    for k in ("joints3d", "joints2d", "pose", "betas"):
        assert out[k].item() == pytest.approx(0.0, abs=1e-8), k
    assert out["cam_prior"].item() == pytest.approx(60 * math.exp(-16), rel=1e-4)


def test_errors_raise_losses_and_gradients_flow():
    rot, betas, cam, joints, j3d, uv, K = _gt()
    cam_p = cam.clone().requires_grad_(True)
    joints_p = (joints + 0.05).requires_grad_(True)
    out = regression_losses(
        rot, betas, cam_p, joints_p, rot, betas, j3d, uv, K, 192, RegressionWeights()
    )
    assert out["joints2d"] > 0
    out["total"].backward()
    assert cam_p.grad.abs().sum() > 0 and joints_p.grad.abs().sum() > 0


def test_parts_term_and_unknown_weight():
    rot, betas, cam, joints, j3d, uv, K = _gt()
    logits = torch.zeros(2, 25, 4, 4)
    parts = torch.zeros(2, 4, 4, dtype=torch.long)
    out = regression_losses(
        rot, betas, cam, joints, rot, betas, j3d, uv, K, 192, RegressionWeights(), logits, parts
    )
    assert out["parts"].item() == pytest.approx(60 * math.log(25), rel=1e-5)
    with pytest.raises(ValueError, match="unknown"):
        RegressionWeights.from_dict({"joint3d": 1.0})


def test_weak_perspective_matches_perspective_for_the_body_origin():
    size = 192
    cam = torch.tensor([[0.7, 0.05, -0.1]])
    K = _camera(1, size=size)
    K[0, 0, 2], K[0, 1, 2] = 130.0, 60.0  # principal point off the crop centre
    t = weak_perspective_to_transl(cam, K, size)
    origin = torch.zeros(1, 1, 3)
    persp = (K[0] @ (t[0] / t[0, 2]))[:2]
    weak = (size - 1) / 2 + size / 2 * weak_perspective_project(origin, cam)[0, 0]
    assert torch.allclose(persp, weak, atol=1e-4)


def test_joints2d_bounded_for_a_collapsed_camera_and_body_term():
    rot, betas, cam, joints, j3d, uv, K = _gt()
    bad = torch.tensor([[1e-4, 5.0, -5.0]]).repeat(2, 1)
    out = regression_losses(rot, betas, bad, joints, rot, betas, j3d, uv, K, 192,
                            RegressionWeights())  # fmt: skip
    assert torch.isfinite(out["total"]) and out["joints2d"] < 300 * 4
    body = (joints + 0.1 * torch.randn_like(joints)).requires_grad_(True)
    out = regression_losses(rot, betas, cam, joints, rot, betas, j3d, uv, K, 192,
                            RegressionWeights(), body_joints=body)  # fmt: skip
    assert out["joints3d_body"] > 0 and out["joints3d"].item() == pytest.approx(0, abs=1e-8)
    out["total"].backward()
    assert body.grad.abs().sum() > 0
