"""Pose statistics, prior and sampler learned from the training takes."""

import numpy as np
import pytest
import torch

from engines.body import BodyModel
from engines.motion.bvh import read_bvh
from engines.motion.retarget import KNOWN_TAKES, SMPLMotion, retarget
from engines.motion.sampler import (
    DEFAULT_LIMITS_PATH,
    HOLDOUT_TAKES,
    PosePrior,
    PoseSampler,
    PoseStats,
    SamplerConfig,
    learn_pose_stats,
    mirror_body_pose,
)
from tests.engines.motion._data import MOCAP


@pytest.fixture(scope="module")
def stats():
    return PoseStats.load(DEFAULT_LIMITS_PATH)


@pytest.fixture(scope="module")
def real_frames():
    """Real poses from a training take (retargeted here, every 10th frame)."""
    if not MOCAP.is_dir():
        pytest.skip("shared mocap data not present")
    rest = BodyModel.default().rest_joints()[0].double().numpy()
    b = read_bvh(MOCAP / "cmu_13_32.bvh")
    return retarget(b, KNOWN_TAKES["cmu_13_32.bvh"][0], rest).body_pose[::10]


def _wild(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    axis = rng.normal(size=(n, 23, 3))
    axis /= np.linalg.norm(axis, axis=-1, keepdims=True)
    return (axis * rng.uniform(0, np.pi, size=(n, 23, 1))).reshape(n, 69)


def test_shipped_stats_shapes_and_limits(stats):
    assert stats.mean.shape == (69,) and stats.cov.shape == (69, 69)
    assert np.all(stats.lo < 0) and np.all(stats.hi > 0)  # rest pose allowed
    assert stats.within(np.zeros((1, 69))).all()
    assert np.all(np.linalg.eigvalsh(stats.cov) > -1e-9)
    assert stats.within(stats.bank).all()
    knee = stats.hi[3, 0], stats.hi[4, 0]  # knees flex about +x by > 90 degrees, not backwards
    assert min(knee) > np.pi / 2 and max(stats.lo[3, 0], stats.lo[4, 0]) > -0.5


def test_samples_within_limits_and_vary(stats):
    s = PoseSampler(stats).sample(500, np.random.default_rng(0))
    assert s.shape == (500, 69) and np.isfinite(s).all()
    assert stats.within(s).all()
    assert np.all(s.std(0) > 1e-3)  # every component varies
    g = PoseSampler(stats, SamplerConfig(noise=0.0, gaussian_fraction=1.0))
    assert g.stats.within(g.sample(100, np.random.default_rng(1))).all()
    with pytest.raises(ValueError):
        SamplerConfig(gaussian_fraction=2.0)


def test_prior_lower_for_real_than_wild(stats, real_frames):
    prior = PosePrior(stats)
    real = prior(torch.tensor(real_frames, dtype=torch.float32))
    wild = prior(torch.tensor(_wild(200, 2), dtype=torch.float32))
    assert real.shape == (len(real_frames),) and torch.isfinite(real).all()
    assert real.max() < wild.min()
    sampled = prior(torch.tensor(PoseSampler(stats).sample(200, np.random.default_rng(3)),
                                 dtype=torch.float32))  # fmt: skip
    assert sampled.median() < wild.min()
    with pytest.raises(ValueError, match="body_pose"):
        prior(torch.zeros(2, 72))


def test_prior_gradient(stats):
    prior = PosePrior(stats).double()
    x = torch.tensor(_wild(2, 4) * 0.5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(prior, (x,), eps=1e-6, atol=1e-5, fast_mode=True)
    # a gradient step lowers the energy
    e = prior(x).sum()
    (g,) = torch.autograd.grad(e, x)
    assert prior(x - 1e-3 * g).sum() < e


def test_mirror_is_involution_and_swaps_sides():
    x = _wild(4, 5)
    np.testing.assert_allclose(mirror_body_pose(mirror_body_pose(x)), x)
    m = mirror_body_pose(x).reshape(4, 23, 3)
    np.testing.assert_allclose(m[:, 0], x.reshape(4, 23, 3)[:, 1] * [1, -1, -1])


def test_learn_refuses_holdout_and_symmetrises(real_frames):
    T = len(real_frames)
    z = np.zeros((T, 3))
    m = SMPLMotion("cmu_13_32", z, real_frames, z, 12.0, "B")
    s = learn_pose_stats([m], rate=12.0, bank_size=50)
    assert s.bank.shape == (50, 69) and s.within(real_frames).all()
    np.testing.assert_allclose(s.mean, mirror_body_pose(s.mean[None])[0], atol=1e-12)
    with pytest.raises(ValueError, match="holdout"):
        learn_pose_stats([SMPLMotion("cmu_16_36", z, real_frames, z, 120.0, "B")])


@pytest.mark.slow
def test_shipped_stats_reproduce_from_training_takes(tmp_path, stats):
    """Re-converting every training take (never holdout/) and re-learning gives the shipped
    file; the conversion of all 16 takes stays well under a minute."""
    import time

    from engines.motion import convert

    if not MOCAP.is_dir():
        pytest.skip("shared mocap data not present")
    rest = BodyModel.default().rest_joints()[0].double().numpy()
    t0 = time.perf_counter()
    motions = convert.convert(MOCAP, tmp_path, rest)
    assert time.perf_counter() - t0 < 60
    assert len(motions) == 16 and not any(m.name in HOLDOUT_TAKES for m in motions)
    s = learn_pose_stats(motions)
    np.testing.assert_allclose(s.mean, stats.mean, atol=1e-5)
    np.testing.assert_allclose(s.lo, stats.lo, atol=1e-5)
    np.testing.assert_allclose(s.hi, stats.hi, atol=1e-5)
    np.testing.assert_allclose(s.bank, stats.bank, atol=1e-5)
