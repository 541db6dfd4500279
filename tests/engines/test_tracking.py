import math

import numpy as np
import pytest
import torch

from engines.body_state import BodyState
from engines.rotations import axis_angle_to_matrix, matrix_to_rot6d
from engines.tracking import (
    AssociationConfig,
    TrackSet,
    association_cost,
    box_from_points,
    extrapolate,
    project_points,
    regression_init,
    visible_fraction,
)


def _state(x=0.0, angle=math.pi):
    return BodyState(
        torch.tensor([[angle, 0.0, 0.0]]),
        torch.zeros(1, 69),
        torch.zeros(1, 10),
        torch.tensor([[x, 0.0, 4.0]]),
    )


def _fit(ts, track, frame, box, x=0.0, warm=True, source=-1):
    j2d = np.zeros((24, 2), np.float32)
    ts.update(
        track, frame, box, _state(x), np.zeros((24, 3)), j2d, "tracking", 0.5, source, warm=warm
    )


def _step(ts, boxes, frame, sources=None):
    """One frame: associate, create new tracks, update, miss; return the ids per box."""
    prior = ts.associate(np.array(boxes, np.float64), None, sources)
    ids = []
    for i, (t, b) in enumerate(zip(prior, boxes, strict=True)):
        src = -1 if sources is None else int(sources[i])
        t = t or ts.create(np.array(b), src)
        _fit(ts, t, frame, np.array(b), source=src)
        ids.append(t.track_id)
    ts.miss(set(ids))
    return ids


def test_ids_stay_stable_for_moving_boxes_and_new_people_get_new_ids():
    ts = TrackSet()
    history = []
    for f in range(12):
        boxes = [[10 + 6 * f, 20, 60 + 6 * f, 140], [300 - 5 * f, 30, 350 - 5 * f, 150]]
        if f >= 6:
            boxes.append([150, 200, 190, 300])  # a third person walks in
        history.append(_step(ts, boxes, f))
    assert all(h[:2] == [1, 2] for h in history)
    assert all(h[2] == 3 for h in history[6:])
    assert len(ts) == 3 and ts.next_id == 4


def test_order_of_detections_does_not_matter():
    ts = TrackSet()
    a, b = [0, 0, 50, 100], [200, 0, 250, 100]
    assert _step(ts, [a, b], 0) == [1, 2]
    assert _step(ts, [b, a], 1) == [2, 1]


def test_joint_distance_separates_people_whose_boxes_overlap():
    cfg = AssociationConfig(min_iou=0.0, id_bonus=0.0)
    box = np.array([[0.0, 0.0, 100.0, 200.0]])
    boxes = np.repeat(box, 2, axis=0)  # two people, same box (crossing)
    left = np.column_stack([np.full(24, 20.0), np.linspace(10, 190, 24)])
    right = left + np.array([60.0, 0.0])
    track_j = np.stack([left, right])
    cost = association_cost(
        boxes, boxes, track_j, np.stack([right, left]), np.array([-1, -1]), np.array([-1, -1]), cfg
    )
    assert cost[0, 1] < cost[0, 0] and cost[1, 0] < cost[1, 1]
    ts = TrackSet(cfg)
    for j in (left, right):
        t = ts.create(box[0])
        _fit(ts, t, 0, box[0])
        t.joints2d = j
    prior = ts.associate(boxes, np.stack([right, left]))
    assert [t.track_id for t in prior] == [2, 1]


def test_upstream_ids_decide_between_equal_candidates_and_gates_reject_far_boxes():
    cfg = AssociationConfig()
    tb = np.array([[0.0, 0.0, 100.0, 200.0]])
    db = np.array([[0.0, 0.0, 100.0, 200.0], [0.0, 0.0, 100.0, 200.0], [500, 0, 600, 200]])
    cost = association_cost(tb, db, None, None, np.array([7]), np.array([3, 7, -1]), cfg)
    assert cost[0, 1] < cost[0, 0] < 1e5 and cost[0, 2] >= 1e5
    # far away but the same upstream id: the detect stage's association is trusted
    cost = association_cost(tb, db[2:], None, None, np.array([7]), np.array([7]), cfg)
    assert cost[0, 0] < 1e5
    with pytest.raises(ValueError, match="track_joints"):
        association_cost(tb, db, np.zeros((1, 24, 2)), np.zeros((2, 24, 2)), [1], [1, 2, 3], cfg)


def test_missing_tracks_are_lost_then_dropped_after_max_misses():
    ts = TrackSet(AssociationConfig(max_misses=3))
    _step(ts, [[0, 0, 50, 100], [200, 0, 250, 100]], 0)
    for f in range(1, 4):
        _step(ts, [[0, 0, 50, 100]], f)
        assert ts.tracks[2].label == "lost" and ts.tracks[2].misses == f
        assert not ts.tracks[2].warm
    assert ts.miss({1}) == [2]  # fourth miss: dropped
    assert set(ts.tracks) == {1}
    # a dropped id is never reused
    assert _step(ts, [[0, 0, 50, 100], [200, 0, 250, 100]], 5) == [1, 3]


def test_update_keeps_velocity_only_across_warm_fits():
    ts = TrackSet()
    t = ts.create(np.array([0, 0, 10, 10]))
    _fit(ts, t, 0, np.array([0, 0, 10, 10]), x=0.0, warm=False)
    assert t.velocity is None and t.age == 1
    _fit(ts, t, 2, np.array([0, 0, 10, 10]), x=0.2, warm=True)  # two frames later
    assert float(t.velocity.transl[0, 0]) == pytest.approx(0.1)
    _fit(ts, t, 3, np.array([0, 0, 10, 10]), x=0.5, warm=False)  # re-initialised
    assert t.velocity is None and t.age == 3 and t.last_frame == 3
    with pytest.raises(ValueError, match="label"):
        ts.update(t, 4, np.zeros(4), _state(), np.zeros((24, 3)), np.zeros((24, 2)), "gone", 0)


def test_extrapolate_composes_rotations_and_moves_translation():
    s = _state(0.0, angle=0.0)
    v = BodyState(
        torch.tensor([[0.0, 0.1, 0.0]]),
        torch.full((1, 69), 0.01),
        torch.zeros(1, 10),
        torch.tensor([[0.05, 0.0, 0.0]]),
    )
    e = extrapolate(s, v, 2.0)
    torch.testing.assert_close(e.global_orient, torch.tensor([[0.0, 0.2, 0.0]]))
    torch.testing.assert_close(e.transl, torch.tensor([[0.1, 0.0, 4.0]]))
    torch.testing.assert_close(e.body_pose, torch.full((1, 69), 0.02))
    assert extrapolate(s, None) is s


def test_projection_and_boxes():
    K = np.array([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    pts = np.array([[[0.0, 0.0, 2.0], [1.0, -0.5, 2.0]]])
    np.testing.assert_allclose(project_points(pts, K), [[[50, 40], [100, 15]]])
    np.testing.assert_allclose(project_points(torch.tensor(pts), K), [[[50, 40], [100, 15]]])
    box = box_from_points(np.array([[10.0, 20.0], [30.0, 60.0], [np.nan, 0.0]]), margin=0.1)
    np.testing.assert_allclose(box, [8, 16, 32, 64])
    clipped = box_from_points(np.array([[-10.0, 20.0], [30.0, 60.0]]), 0.0, 100, 50)
    np.testing.assert_allclose(clipped, [-0.5, 20, 30, 49.5])
    assert visible_fraction(np.array([-10.5, 0, 9.5, 10]), 100, 100) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="points2d"):
        box_from_points(np.full((3, 2), np.nan))


def test_regression_init_matches_the_head_outputs():
    aa = torch.randn(2, 24, 3) * 0.3
    aa[:, 0] = torch.tensor([math.pi * 0.9, 0.1, 0.0])
    pose6d = matrix_to_rot6d(axis_angle_to_matrix(aa))
    cam = torch.tensor([[0.8, 0.1, -0.2], [1.2, 0.0, 0.0]])
    K = torch.zeros(2, 3, 3)
    K[:, 0, 0] = K[:, 1, 1] = torch.tensor([500.0, 250.0])
    K[:, :2, 2] = 95.5  # principal point at the crop centre
    K[:, 2, 2] = 1.0
    st = regression_init(pose6d, torch.ones(2, 10), cam, K, 192)
    torch.testing.assert_close(
        axis_angle_to_matrix(st.global_orient), axis_angle_to_matrix(aa[:, 0]), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(st.body_pose, aa[:, 1:].reshape(2, 69), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        st.transl[:, 2], torch.tensor([2 * 500 / (192 * 0.8), 2 * 250 / (192 * 1.2)])
    )
    torch.testing.assert_close(st.transl[:, :2], cam[:, 1:])
    with pytest.raises(ValueError, match="pose6d"):
        regression_init(pose6d[:, :23], torch.ones(2, 10), cam, K, 192)
