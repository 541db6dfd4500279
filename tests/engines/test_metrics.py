import numpy as np
import pytest

from engines.metrics import JOINTS14, mpjpe, pa_mpjpe, pckh, procrustes_align


def _rot_y(a):
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def test_mpjpe_ignores_root_translation_and_counts_mm():
    rng = np.random.default_rng(0)
    gt = rng.normal(size=(3, 24, 3))
    pred = gt + np.array([1.0, 2.0, 3.0])
    assert mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-9)
    pred2 = gt.copy()
    pred2[:, 5] += np.array([0.01, 0, 0])  # 10 mm on one joint of 24
    assert mpjpe(pred2, gt) == pytest.approx(10.0 / 24, rel=1e-6)
    assert mpjpe(pred2, gt, joints=JOINTS14) == pytest.approx(10.0 / 14, rel=1e-6)


def test_visible_mask_excludes_joints():
    gt = np.zeros((1, 24, 3))
    pred = gt.copy()
    pred[0, 7] = [0.1, 0, 0]
    vis = np.ones((1, 24), bool)
    vis[0, 7] = False
    assert mpjpe(pred, gt, vis) == 0.0


def test_pa_mpjpe_removes_similarity():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(2, 24, 3))
    pred = 1.7 * gt @ _rot_y(0.8).T + 0.3
    assert pa_mpjpe(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert mpjpe(pred, gt) > 100
    aligned = procrustes_align(pred[0], gt[0])
    assert np.allclose(aligned, gt[0], atol=1e-8)


def test_pa_mpjpe_does_not_reflect():
    gt = np.random.default_rng(2).normal(size=(1, 24, 3))
    mirrored = gt * np.array([-1, 1, 1])
    assert pa_mpjpe(mirrored, gt) > 1.0


def test_pckh_threshold():
    gt = np.zeros((1, 3, 2))
    pred = np.array([[[1.0, 0], [3.0, 0], [6.0, 0]]])
    assert pckh(pred, gt, np.array([10.0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="head_size"):
        pckh(pred, gt, np.array([10.0, 1.0]))


def test_shape_errors():
    with pytest.raises(ValueError, match="pred and gt"):
        mpjpe(np.zeros((2, 24, 3)), np.zeros((2, 23, 3)))
    with pytest.raises(ValueError, match="visible"):
        mpjpe(np.zeros((2, 24, 3)), np.zeros((2, 24, 3)), np.ones((2, 3), bool))
