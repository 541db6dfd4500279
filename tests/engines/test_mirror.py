import math

import numpy as np
import pytest
import torch

from engines.body import BodyModel
from engines.featnet import FeatNetConfig, FeatureNet, normalize_images
from engines.mirror import (
    MIRROR_JOINTS,
    chordal_mean,
    flip_average,
    flip_crops,
    mirror_cam,
    mirror_rotmats,
)
from engines.motion.sampler import mirror_body_pose
from engines.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix


def _random_rotmats(B, seed=0):  # [B, 24, 3, 3]
    g = torch.Generator().manual_seed(seed)
    return axis_angle_to_matrix(0.6 * torch.randn(B, 24, 3, generator=g, dtype=torch.float64))


def test_mirror_joints_swap_left_and_right_names():
    from engines.body import JOINT_NAMES

    for j, m in enumerate(MIRROR_JOINTS):
        a, b = JOINT_NAMES[j], JOINT_NAMES[m]
        assert a.replace("left", "right") == b or a.replace("right", "left") == b or a == b
    assert all(MIRROR_JOINTS[m] == j for j, m in enumerate(MIRROR_JOINTS))  # an involution


def test_mirror_rotmats_matches_the_axis_angle_mirror_and_is_an_involution():
    g = torch.Generator().manual_seed(1)
    aa = 0.7 * torch.randn(5, 24, 3, generator=g, dtype=torch.float64)
    R = axis_angle_to_matrix(aa)
    expect = axis_angle_to_matrix(
        torch.from_numpy(mirror_body_pose(aa[:, 1:].reshape(5, 69).numpy())).reshape(5, 23, 3)
    )
    np.testing.assert_allclose(mirror_rotmats(R)[:, 1:], expect, atol=1e-12)
    np.testing.assert_allclose(mirror_rotmats(mirror_rotmats(R)), R, atol=1e-12)
    assert torch.allclose(torch.det(mirror_rotmats(R)), torch.ones(5, 24, dtype=torch.float64))


def test_mirrored_pose_poses_the_mirror_image_of_the_body():
    """The reason the formula is right: joints of the mirrored pose are the reflection of the
    original joints (left/right swapped), for the shipped body model (a symmetric rest pose)."""
    body = BodyModel.default()
    R = _random_rotmats(3, seed=2).float()
    R[:, 0] = torch.eye(3)  # body frame = camera frame, so the reflection is x -> -x
    from engines.rotations import matrix_to_axis_angle

    def joints(Rm):
        aa = matrix_to_axis_angle(Rm)
        betas = torch.zeros(3, body.num_betas)
        return body(aa[:, 0], aa[:, 1:].reshape(3, 69), betas, torch.zeros(3, 3)).joints

    j, jm = joints(R), joints(mirror_rotmats(R))
    j = j - j[:, :1]
    jm = jm - jm[:, :1]
    reflected = j[:, list(MIRROR_JOINTS)] * torch.tensor([-1.0, 1.0, 1.0])
    err = (jm - reflected).norm(dim=-1).max().item()
    assert err < 1e-3, f"mirrored pose is {err * 1000:.1f} mm off the reflected body"


def test_mirror_cam_negates_only_tx():
    cam = torch.tensor([[0.9, 0.1, -0.2], [1.1, -0.3, 0.05]])
    np.testing.assert_allclose(mirror_cam(cam), [[0.9, -0.1, -0.2], [1.1, 0.3, 0.05]])
    with pytest.raises(ValueError, match=r"\[B, 3\]"):
        mirror_cam(torch.zeros(2, 4))


def test_chordal_mean_of_rotations_about_one_axis_is_the_mean_angle():
    axis = torch.tensor([0.0, 0.6, 0.8], dtype=torch.float64)
    a, b = 0.3, 1.1
    R = axis_angle_to_matrix(torch.stack([a * axis, b * axis]))  # [2, 3, 3]
    mean = chordal_mean(R)
    np.testing.assert_allclose(mean, axis_angle_to_matrix((a + b) / 2 * axis), atol=1e-12)
    np.testing.assert_allclose(chordal_mean(torch.stack([R[0], R[0]])), R[0], atol=1e-12)
    assert torch.det(mean).item() == pytest.approx(1.0)


def test_chordal_mean_is_a_proper_rotation_for_far_apart_inputs():
    R = axis_angle_to_matrix(torch.tensor([[0.0, 0.0, 0.0], [0.0, math.pi * 0.95, 0.0]]))
    m = chordal_mean(R)
    np.testing.assert_allclose(m.T @ m, torch.eye(3), atol=1e-5)
    assert torch.det(m).item() == pytest.approx(1.0, abs=1e-5)


def _outputs(R, seed):  # a regression-head-like dict from rotations [B, 24, 3, 3]
    g = torch.Generator().manual_seed(seed)
    B = R.shape[0]
    return {
        "pose6d": matrix_to_rot6d(R).float(),
        "betas": torch.randn(B, 10, generator=g),
        "cam": torch.rand(B, 3, generator=g) + 0.5,
    }


def test_flip_average_of_a_consistent_pair_is_the_first_estimate():
    R = _random_rotmats(4, seed=3)
    out = _outputs(R, 0)
    flipped = {
        "pose6d": matrix_to_rot6d(mirror_rotmats(R)).float(),
        "betas": out["betas"].clone(),
        "cam": mirror_cam(out["cam"]),
    }
    avg = flip_average(out, flipped)
    np.testing.assert_allclose(rot6d_to_matrix(avg["pose6d"]), R.float(), atol=1e-5)
    np.testing.assert_allclose(avg["betas"], out["betas"], atol=1e-6)
    np.testing.assert_allclose(avg["cam"], out["cam"], atol=1e-6)


def test_flip_average_keeps_the_first_global_orientation_and_averages_the_rest():
    R, R2 = _random_rotmats(2, seed=4), _random_rotmats(2, seed=5)
    out, other = _outputs(R, 0), _outputs(R2, 1)
    avg = flip_average(out, other)
    P = rot6d_to_matrix(avg["pose6d"]).double()
    np.testing.assert_allclose(P[:, 0], R[:, 0], atol=1e-5)
    expect = chordal_mean(torch.stack([R[:, 1:], mirror_rotmats(R2)[:, 1:]]))
    np.testing.assert_allclose(P[:, 1:], expect, atol=1e-5)
    np.testing.assert_allclose(avg["betas"], (out["betas"] + other["betas"]) / 2, atol=1e-6)
    np.testing.assert_allclose(avg["cam"], (out["cam"] + mirror_cam(other["cam"])) / 2, atol=1e-6)
    assert out["pose6d"] is not avg["pose6d"]  # new tensors, inputs untouched


def test_flip_average_rejects_bad_inputs():
    out = _outputs(_random_rotmats(2), 0)
    with pytest.raises(ValueError, match="missing"):
        flip_average(out, {"pose6d": out["pose6d"]})
    with pytest.raises(ValueError, match="shapes differ"):
        flip_average(out, _outputs(_random_rotmats(3), 1))
    with pytest.raises(ValueError, match=r"\[B, S, S, C\]"):
        flip_crops(np.zeros((8, 8, 3), np.uint8))


def test_flip_averaged_network_is_mirror_consistent():
    """With a real network, the flip-averaged articulation of a crop is the mirror of that of the
    flipped crop (the two passes see the same pair of images)."""
    torch.manual_seed(0)
    net = FeatureNet(FeatNetConfig(input_size=64, width=8, feature_dim=16)).eval()
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        a, b = net(normalize_images(crops)), net(normalize_images(flip_crops(crops)))
        avg, avg_f = flip_average(a, b), flip_average(b, a)
    Ra = rot6d_to_matrix(avg["pose6d"])
    Rb = mirror_rotmats(rot6d_to_matrix(avg_f["pose6d"]))
    np.testing.assert_allclose(Ra[:, 1:], Rb[:, 1:], atol=1e-5)
    np.testing.assert_allclose(avg["cam"], mirror_cam(avg_f["cam"]), atol=1e-6)
    np.testing.assert_array_equal(flip_crops(flip_crops(crops)), crops)
