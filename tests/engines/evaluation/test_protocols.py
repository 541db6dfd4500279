import cv2
import numpy as np
import pytest

from engines.evaluation.protocols import (
    advocc_grid,
    advocc_images,
    joints_in_crop,
    joints_under_mask,
    joints_under_patch,
    occ_sample,
    worst_case,
)
from engines.synth.occluders import square_patch


def test_grid_counts_at_224_units():
    g40, g80 = advocc_grid(224, 40), advocc_grid(224, 80)
    assert len(g40.positions) == 400 and g40.side == 40 and g40.stride == 10
    assert len(g80.positions) == 256 and g80.side == 80
    assert g80.positions.max() == 150  # last corner of the released grid: 15 * 10
    assert len(np.unique(g80.positions, axis=0)) == 256


def test_grid_scales_to_crop_size():
    g = advocc_grid(192, 80)
    assert (g.side, g.stride, len(g.positions)) == (69, 9, 256)
    g = advocc_grid(320, 40)
    assert (g.side, g.stride, len(g.positions)) == (57, 14, 400)
    assert len(advocc_grid(192, 80, step=4).positions) == 16
    with pytest.raises(ValueError):
        advocc_grid(192, 0)


def test_patch_pixels_and_joints_under_patch():
    S = 64
    grid = advocc_grid(S, 80)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (S, S, 3), dtype=np.uint8)
    tex = rng.integers(0, 255, (grid.side, grid.side, 3), dtype=np.uint8)
    joints = rng.uniform(-5, S + 5, (24, 2))
    imgs = advocc_images(image, grid, tex)
    under = joints_under_patch(joints, grid.positions, grid.side, S)
    assert imgs.shape == (256, S, S, 3) and under.shape == (256, 24)
    for k in (0, 37, 255):
        x0, y0 = grid.positions[k]
        mask = np.zeros((S, S), bool)
        mask[y0 : y0 + grid.side, x0 : x0 + grid.side] = True
        np.testing.assert_array_equal(imgs[k][~mask], image[~mask])
        ys, xs = np.nonzero(mask)
        np.testing.assert_array_equal(imgs[k][ys, xs], tex[ys - y0, xs - x0])
        np.testing.assert_array_equal(under[k], joints_under_mask(joints, mask))
        _, m2 = square_patch(image, int(x0), int(y0), grid.side, tex)
        np.testing.assert_array_equal(m2, mask)
    # a joint at the patch's corner pixel is under it; one just outside is not
    j = np.array([[10.2, 20.4], [9.4, 20.0], [np.nan, np.nan]])
    u = joints_under_patch(j, np.array([[10, 20]]), 5, S)[0]
    assert u.tolist() == [True, False, False]
    assert joints_in_crop(np.array([[-0.6, 3.0], [63.4, 0.0]]), S).tolist() == [False, True]


def test_worst_case_is_argmax():
    rng = np.random.default_rng(1)
    e = rng.uniform(0, 100, 50)
    assert worst_case(e) == int(np.argmax(e))
    e[3] = np.nan
    e[7] = 1000.0
    assert worst_case(e) == 7
    assert worst_case(np.array([np.nan, np.nan])) == 0
    with pytest.raises(ValueError):
        worst_case(np.zeros((2, 2)))


def test_occ_sample_covers_part_of_the_body():
    S = 64
    rng = np.random.default_rng(2)
    sil = np.zeros((S, S), bool)
    sil[8:56, 24:40] = True
    image = np.full((S, S, 3), 30, np.uint8)
    out, mask, cov = occ_sample(rng, image, sil, None)
    assert 0.05 <= cov <= 0.45
    assert abs((mask & sil).sum() / sil.sum() - cov) < 1e-6
    changed = (out != image).any(-1)
    near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert changed[mask].mean() > 0.9 and not changed[~near].any()
