import numpy as np

from engines.detect.tracker import IouTracker


def _b(x):
    return np.array([[x, 0, x + 10, 20]], np.float32)


def test_ids_stable_then_occluded_then_lost():
    tr = IouTracker(iou_threshold=0.3, max_missed=2)
    t = tr.update(_b(0), [0.9])
    assert [(x.track_id, x.state) for x in t] == [(1, "tracking")]
    t = tr.update(_b(2), [0.8])  # moved a little: same id
    assert [(x.track_id, x.state) for x in t] == [(1, "tracking")]
    t = tr.update(np.concatenate([_b(2), _b(100)]), [0.8, 0.7])
    assert sorted((x.track_id, x.state) for x in t) == [(1, "tracking"), (2, "tracking")]
    states = [[(x.track_id, x.state) for x in tr.update(_b(100), [0.7])] for _ in range(3)]
    assert states[0] == [(1, "occluded"), (2, "tracking")]
    assert states[2] == [(1, "lost"), (2, "tracking")]  # reported once ...
    assert [x.track_id for x in tr.update(_b(100), [0.7])] == [2]  # ... then removed


def test_follow_uses_fit_predictions():
    tr = IouTracker()
    tr.update(_b(0), [0.9])
    t = tr.follow({1: (np.array([5, 0, 15, 20]), 0.8)})
    assert t[0].box_source == "fit" and t[0].score == np.float32(0.8)
    np.testing.assert_array_equal(t[0].box, [5, 0, 15, 20])
