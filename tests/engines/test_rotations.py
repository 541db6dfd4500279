import math

import torch

from engines.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_rot6d,
    quaternion_to_matrix,
    rot6d_to_matrix,
)


def _random_aa(n, max_angle=math.pi - 1e-3, seed=0):
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(
        torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1
    )
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * max_angle
    return axis * angle


def test_known_rotation_about_z():
    R = axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    # column-vector convention: x axis goes to y axis
    assert torch.allclose(
        R @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
        torch.tensor([0.0, 1, 0], dtype=torch.float64),
        atol=1e-12,
    )


def test_matrix_is_orthonormal_and_round_trips():
    aa = _random_aa(500)
    R = axis_angle_to_matrix(aa)
    eye = torch.eye(3, dtype=torch.float64).expand_as(R)
    assert torch.allclose(R @ R.transpose(-1, -2), eye, atol=1e-10)
    assert torch.allclose(torch.linalg.det(R), torch.ones(500, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(matrix_to_axis_angle(R), aa, atol=1e-7)


def test_zero_rotation_and_gradient_finite():
    aa = torch.zeros(4, 3, dtype=torch.float64, requires_grad=True)
    R = axis_angle_to_matrix(aa)
    assert torch.allclose(R, torch.eye(3, dtype=torch.float64).expand(4, 3, 3))
    R.sum().backward()
    assert torch.isfinite(aa.grad).all()


def test_quaternion_round_trip():
    R = axis_angle_to_matrix(_random_aa(200, seed=1))
    q = matrix_to_quaternion(R)
    assert (q[:, 0] >= 0).all()
    assert torch.allclose(quaternion_to_matrix(q), R, atol=1e-10)


def test_rot6d_round_trip_and_projection():
    R = axis_angle_to_matrix(_random_aa(100, seed=2))
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(R)), R, atol=1e-10)
    noisy = matrix_to_rot6d(R) + 0.01 * torch.randn(100, 6, dtype=torch.float64)
    Rn = rot6d_to_matrix(noisy)
    eye = torch.eye(3, dtype=torch.float64).expand_as(Rn)
    assert torch.allclose(Rn @ Rn.transpose(-1, -2), eye, atol=1e-10)
