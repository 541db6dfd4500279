"""Paired comparison of two methods on the same frames."""

import numpy as np
import pytest

from engines.evaluation.runner import MethodOutput, ProtocolFrames, per_sample_mpjpe
from engines.evaluation.stats import paired_difference, per_frame_mpjpe


def _frames(rng, t):
    j = rng.normal(size=(t, 24, 3))
    vis = np.ones((t, 24), bool)
    vis[0, 5:] = False  # a frame with few visible joints is still scored on those
    return ProtocolFrames("s", np.zeros((t, 2, 2, 3), np.uint8), np.tile(np.eye(3), (t, 1, 1)),
                          j, np.zeros((t, 24, 2)), vis, vis, np.ones(t), [{}] * t)  # fmt: skip


def _out(pred, index):
    n = len(index)
    return MethodOutput(pred, np.zeros(n), np.zeros(n), np.asarray(index))


def test_per_frame_mpjpe_follows_the_frame_index():
    rng = np.random.default_rng(0)
    f = _frames(rng, 6)
    pred = f.joints3d[[0, 2, 4]] + rng.normal(scale=0.05, size=(3, 24, 3))
    got = per_frame_mpjpe([_out(pred, [0, 2, 4])], [f])
    want = per_sample_mpjpe(pred, f.joints3d[[0, 2, 4]], f.visible[[0, 2, 4]])
    np.testing.assert_allclose(got, want)


def test_a_consistently_better_method_has_an_interval_below_zero():
    rng = np.random.default_rng(1)
    frames = [_frames(rng, 20), _frames(rng, 20)]
    idx = np.arange(20)
    noise = [rng.normal(scale=0.1, size=(20, 24, 3)) for _ in frames]
    good = [_out(f.joints3d + 0.5 * n, idx) for f, n in zip(frames, noise)]
    bad = [_out(f.joints3d + n, idx) for f, n in zip(frames, noise)]
    d = paired_difference(good, bad, frames)
    assert d["frames"] == 40 and d["a_better"] == 1.0
    assert d["ci95_mm"][0] <= d["mean_mm"] <= d["ci95_mm"][1] < 0
    same = paired_difference(bad, bad, frames)
    assert same["mean_mm"] == 0 and same["ci95_mm"] == [0, 0] and same["a_better"] == 0


def test_noise_alone_gives_an_interval_across_zero():
    rng = np.random.default_rng(2)
    frames = [_frames(rng, 60)]
    idx = np.arange(60)
    a = [_out(frames[0].joints3d + rng.normal(scale=0.1, size=(60, 24, 3)), idx)]
    b = [_out(frames[0].joints3d + rng.normal(scale=0.1, size=(60, 24, 3)), idx)]
    lo, hi = paired_difference(a, b, frames)["ci95_mm"]
    assert lo < 0 < hi


def test_frames_must_match():
    rng = np.random.default_rng(3)
    f = _frames(rng, 4)
    a = [_out(f.joints3d[[0, 2]], [0, 2])]
    b = [_out(f.joints3d[[1, 3]], [1, 3])]
    with pytest.raises(ValueError, match="same frames"):
        paired_difference(a, b, [f])
    with pytest.raises(ValueError, match="n_boot"):
        paired_difference(a, a, [f], n_boot=0)
