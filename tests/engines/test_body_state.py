"""Body states: shape checks, turns and the front/back flip, per-frame velocity and
extrapolation."""

import pytest
import torch

from engines.body import BodyModel
from engines.body_state import (
    BodyState,
    extrapolate,
    flip_front_back,
    turn_about_vertical,
    velocity,
)
from engines.rotations import axis_angle_to_matrix


def _random_state(b: int, seed: int) -> BodyState:
    g = torch.Generator().manual_seed(seed)
    return BodyState(0.5 * torch.randn(b, 3, generator=g), 0.3 * torch.randn(b, 69, generator=g),
                     torch.zeros(b, 10), torch.randn(b, 3, generator=g))  # fmt: skip


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="body_pose"):
        BodyState(torch.zeros(1, 3), torch.zeros(1, 68), torch.zeros(1, 10), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="betas"):
        BodyState(torch.zeros(2, 3), torch.zeros(2, 69), torch.zeros(1, 10), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="global_orient"):
        BodyState(torch.zeros(3), torch.zeros(1, 69), torch.zeros(1, 10), torch.zeros(1, 3))


def test_select_cat_where_round_trip():
    s = _random_state(3, 1)
    parts = BodyState.cat([s.select([0]), s.select(slice(1, 3))])
    assert all(torch.equal(a, b) for a, b in zip(parts.as_tuple(), s.as_tuple()))
    other = _random_state(3, 2)
    mixed = BodyState.where(torch.tensor([True, False, True]), s, other)
    assert torch.equal(mixed.body_pose[1], other.body_pose[1])
    assert torch.equal(mixed.transl[2], s.transl[2])


def test_flip_twice_is_identity_and_pelvis_stays():
    body = BodyModel.default()
    s = _random_state(2, 4)
    pelvis = body.rest_joints(s.betas)[:, 0]
    f1 = flip_front_back(s, pelvis)
    f2 = flip_front_back(f1, pelvis)
    j0 = body(*s.as_tuple()).joints
    j2 = body(*f2.as_tuple()).joints
    assert torch.allclose(j0, j2, atol=1e-4)
    j1 = body(*f1.as_tuple()).joints
    assert torch.allclose(j1[:, 0], j0[:, 0], atol=1e-4)
    # the left hip of the flipped body sits where the right hip was, roughly mirrored
    assert not torch.allclose(j1[:, 1], j0[:, 1], atol=1e-2)


def test_quarter_turns_keep_the_pelvis_and_the_pose_and_four_make_a_whole_turn():
    body = BodyModel.default()
    s = _random_state(2, 7)
    pelvis = body.rest_joints(s.betas)[:, 0]
    t = turn_about_vertical(s, pelvis, 90.0)
    j0, j1 = body(*s.as_tuple()).joints, body(*t.as_tuple()).joints
    assert torch.allclose(j1[:, 0], j0[:, 0], atol=1e-4)  # the pelvis stays
    assert torch.equal(t.body_pose, s.body_pose)
    # the body's own vertical (rest y axis, in the camera frame) is unchanged; its facing turns
    R0, R1 = axis_angle_to_matrix(s.global_orient), axis_angle_to_matrix(t.global_orient)
    assert torch.allclose(R1[:, :, 1], R0[:, :, 1], atol=1e-5)
    assert torch.allclose((R0[:, :, 2] * R1[:, :, 2]).sum(-1), torch.zeros(2), atol=1e-5)
    assert torch.allclose((R0[:, :, 2] * R1[:, :, 0]).sum(-1), -torch.ones(2), atol=1e-5)
    back = turn_about_vertical(t, pelvis, -90.0)
    assert torch.allclose(body(*back.as_tuple()).joints, j0, atol=1e-4)
    whole = s
    for _ in range(4):
        whole = turn_about_vertical(whole, pelvis, 90.0)
    assert torch.allclose(body(*whole.as_tuple()).joints, j0, atol=1e-4)
    # the flip is the half turn with the pose mirrored
    half, flip = turn_about_vertical(s, pelvis, 180.0), flip_front_back(s, pelvis)
    assert torch.allclose(half.global_orient, flip.global_orient)
    assert torch.allclose(half.transl, flip.transl)


def test_choose_takes_each_body_from_its_state():
    a, b, c = _random_state(3, 8), _random_state(3, 9), _random_state(3, 10)
    pick = BodyState.choose([a, b, c], torch.tensor([2, 0, 1]))
    assert torch.equal(pick.body_pose[0], c.body_pose[0])
    assert torch.equal(pick.transl[1], a.transl[1])
    assert torch.equal(pick.global_orient[2], b.global_orient[2])
    with pytest.raises(ValueError, match="choose"):
        BodyState.choose([a, b], torch.tensor([0, 1]))


def test_extrapolating_a_full_velocity_reaches_the_next_state():
    prev, cur = _random_state(2, 5), _random_state(2, 6)
    v = velocity(prev, cur)
    assert torch.allclose(v.transl, cur.transl - prev.transl)
    assert torch.count_nonzero(v.betas) == 0
    nxt = extrapolate(prev, v, 1.0)
    R = axis_angle_to_matrix(nxt.global_orient)
    assert torch.allclose(R, axis_angle_to_matrix(cur.global_orient), atol=1e-5)
    assert torch.allclose(nxt.body_pose, cur.body_pose, atol=1e-6)
    assert torch.allclose(nxt.transl, cur.transl, atol=1e-6)
    half = extrapolate(prev, v, 0.5)  # half the translation step, betas untouched
    assert torch.allclose(half.transl, prev.transl + 0.5 * (cur.transl - prev.transl))
    assert half.betas is prev.betas
