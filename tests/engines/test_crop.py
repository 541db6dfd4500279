import math

import numpy as np
import pytest

from engines.crop import (
    crop_affine,
    crop_intrinsics,
    crop_window,
    extract_crops,
    frame_intrinsics,
    make_crop,
)
from engines.synth.camera import crop_intrinsics as synth_crop_intrinsics


def _project(K, X):  # [3, 3], [N, 3] -> [N, 2]
    uvw = X @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def test_frame_intrinsics_from_fov_and_given_values():
    K = frame_intrinsics(640, 480, hfov_deg=90.0)
    assert K[0, 0] == pytest.approx(320.0) and K[1, 1] == pytest.approx(320.0)
    assert (K[0, 2], K[1, 2]) == (319.5, 239.5)  # pixel centres at integers
    # the image edges (-0.5 and W - 0.5) are at +-45 degrees
    assert math.degrees(math.atan((639.5 - K[0, 2]) / K[0, 0])) == pytest.approx(45.0)
    K2 = frame_intrinsics(640, 480, fx=500.0, fy=510.0, cx=300.0, cy=200.0)
    np.testing.assert_array_equal(K2, [[500, 0, 300], [0, 510, 200], [0, 0, 1]])
    for bad in ({"hfov_deg": 0.0}, {"hfov_deg": 180.0}, {"fx": -1.0}):
        with pytest.raises(ValueError):
            frame_intrinsics(640, 480, **bad)
    with pytest.raises(ValueError, match="width, height"):
        frame_intrinsics(0, 480)


def test_crop_window_is_square_around_the_box():
    bx, by, s = crop_window(np.array([10.0, 20.0, 50.0, 120.0]), scale=1.2)
    assert (bx, by, s) == pytest.approx((30.0, 70.0, 120.0))
    assert crop_window(np.array([5.0, 5.0, 6.0, 6.0]), min_side=32.0)[2] == 32.0
    with pytest.raises(ValueError, match="box"):
        crop_window(np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="box"):
        crop_window(np.array([0.0, np.nan, 2.0, 3.0]))


def test_point_projects_to_the_same_crop_pixel_through_both_cameras():
    rng = np.random.default_rng(0)
    K = frame_intrinsics(1280, 720, hfov_deg=55.0)
    X = np.column_stack([rng.uniform(-1, 1, 50), rng.uniform(-1, 1, 50), rng.uniform(2, 8, 50)])
    uv = _project(K, X)
    for box in ([600.3, 200.7, 700.1, 500.2], [-50.0, -30.0, 80.0, 300.0]):
        crop = make_crop(K, np.array(box), 192, scale=1.25)
        via_frame = uv @ crop.affine[:, :2].T + crop.affine[:, 2]
        np.testing.assert_allclose(_project(crop.K, X), via_frame, atol=1e-9)
        np.testing.assert_allclose(crop.to_frame(via_frame), uv, atol=1e-9)
        assert crop.K[0, 0] == pytest.approx(K[0, 0] * 192 / crop.window[2])
        # the synthetic data engine's crop cameras follow the same convention
        np.testing.assert_allclose(crop.K, synth_crop_intrinsics(K, crop.window, 192), atol=1e-9)
    # the window's edges map to the crop's edges (pixel-centre convention)
    A = crop_affine((100.0, 50.0, 40.0), 80)
    np.testing.assert_allclose(A @ [80.0, 30.0, 1.0], [-0.5, -0.5])
    np.testing.assert_allclose(A @ [120.0, 70.0, 1.0], [79.5, 79.5])
    with pytest.raises(ValueError, match="K"):
        crop_intrinsics(np.eye(4), (0.0, 0.0, 10.0), 64)


def test_extract_crops_puts_image_content_where_the_camera_says():
    H, W = 120, 160
    img = np.zeros((H, W, 3), np.uint8)
    u, v = 101, 37
    img[v - 1 : v + 2, u - 1 : u + 2] = (255, 128, 0)
    K = frame_intrinsics(W, H, hfov_deg=60.0)
    crop = make_crop(K, np.array([80.0, 10.0, 120.0, 70.0]), 96, scale=1.0)  # s = 60, k = 1.6
    out = extract_crops(img, [crop, crop])
    assert out.shape == (2, 96, 96, 3) and out.dtype == np.uint8
    red = out[0, :, :, 0].astype(np.float64)
    ys, xs = np.mgrid[:96, :96]
    centroid = np.array([(red * xs).sum(), (red * ys).sum()]) / red.sum()
    expected = crop.affine @ [u, v, 1.0]
    np.testing.assert_allclose(centroid, expected, atol=0.3)
    assert out[0, round(expected[1]), round(expected[0])].tolist()[:2] == [255, 128]


def test_outside_the_frame_is_filled_with_the_border_value():
    img = np.full((50, 50, 3), 200, np.uint8)
    K = frame_intrinsics(50, 50)
    crop = make_crop(K, np.array([30.0, 30.0, 70.0, 70.0]), 64, scale=1.0)  # half outside
    out = extract_crops(img, [crop], border_value=(1, 2, 3))[0]
    assert out[-1, -1].tolist() == [1, 2, 3]
    assert out[2, 2].tolist() == [200, 200, 200]
    with pytest.raises(ValueError, match="at least one"):
        extract_crops(img, [])
    with pytest.raises(ValueError, match="image"):
        extract_crops(img[..., 0], [crop])
