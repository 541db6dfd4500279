"""Paired comparison of two methods on the same frames."""

import numpy as np
import pytest

from engines.evaluation.runner import MethodOutput, ProtocolFrames, per_sample_mpjpe
from engines.evaluation.stats import paired_difference, per_frame_mpjpe, two_stage_bootstrap


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
    assert d["frames"] == 40 and d["sequences"] == 2 and d["a_better"] == 1.0
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


def test_correlated_sequences_widen_the_interval():
    # each sequence is uniformly better or worse (a tracker right or wrong for the whole
    # sequence): 150 frames, but only 5 independent outcomes; over frames alone it would look sure
    groups = [np.full(30, -2.0)] * 4 + [np.full(30, 4.0)]
    boot = two_stage_bootstrap(groups, n_boot=4000)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    assert lo < 0 < hi
    flat = np.concatenate(groups)
    over_frames = flat[np.random.default_rng(0).integers(0, 150, (4000, 150))].mean(axis=1)
    assert np.percentile(over_frames, 97.5) < 0  # what the per-frame bootstrap would claim
    assert boot.mean() == pytest.approx(flat.mean(), abs=0.2)


def test_one_sequence_is_the_bootstrap_over_its_frames():
    g = np.random.default_rng(4).normal(size=50)
    boot = two_stage_bootstrap([g], n_boot=4000)
    assert boot.std() == pytest.approx(g.std() / np.sqrt(50), rel=0.1)
    assert np.isclose(two_stage_bootstrap([np.full(7, 3.0), np.array([])], n_boot=10), 3.0).all()
    with pytest.raises(ValueError, match="non-empty"):
        two_stage_bootstrap([np.array([])])
