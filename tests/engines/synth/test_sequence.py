from pathlib import Path

import numpy as np
import pytest
import torch

from engines.synth.camera import crop_intrinsics
from engines.synth.dataset import SynthConfig
from engines.synth.poses import TakeBank
from engines.synth.raster import project_points
from engines.synth.scene import BodyRenderer
from engines.synth.sequence import crop_from_frame, render_sequence

from .test_dataset import _walk


@pytest.fixture(scope="module")
def seq():
    takes = TakeBank([Path("walk.bvh")], loader=_walk)
    return render_sequence(
        SynthConfig(crop_size=96), "train", 0, num_frames=6, frame_size=(320, 180),
        renderer=BodyRenderer(), takes=takes, seed=4,
    )  # fmt: skip


def test_sequence_shapes_and_fixed_camera(seq):
    T = 6
    assert seq.frames.shape == (T, 180, 320, 3) and seq.crops.shape == (T, 96, 96, 3)
    assert seq.fps == pytest.approx(30.0)
    assert seq.K_frame.shape == (3, 3) and seq.K_crop.shape == (T, 3, 3)
    # the body moves in the fixed camera (walk: 1.2 m/s -> 4 cm per frame at 30 fps)
    step = np.linalg.norm(np.diff(seq.joints3d[:, 0], axis=0), axis=1)
    assert (step > 0.02).all() and (step < 0.08).all()
    # projections
    for t in range(T):
        j = torch.as_tensor(seq.joints3d[t], dtype=torch.float64)
        uvf = project_points(j, torch.as_tensor(seq.K_frame, dtype=torch.float64)).numpy()
        uvc = project_points(j, torch.as_tensor(seq.K_crop[t], dtype=torch.float64)).numpy()
        np.testing.assert_allclose(seq.joints2d_frame[t], uvf, atol=1e-2)
        np.testing.assert_allclose(seq.joints2d_crop[t], uvc, atol=1e-2)
        assert seq.silhouettes[t].any()
        assert ((uvc > -0.5) & (uvc < 95.5)).all()  # whole body inside the crop


def test_crop_from_frame_matches_crop_camera():
    """A frame pixel's content lands where the crop camera (crop_intrinsics) maps it."""
    frame = np.zeros((180, 320, 3), np.uint8)
    frame[100, 150] = 255
    K = np.array([[300.0, 0, 159.5], [0, 300.0, 89.5], [0, 0, 1]])
    for win, S in (((150.5, 100.5, 96.0), 96), ((140.5, 90.5, 48.0), 96)):
        crop = crop_from_frame(frame, win, S)
        Kc = crop_intrinsics(K, win, S)
        # the ray through frame pixel (150, 100)
        X = np.array([(150 - K[0, 2]) / K[0, 0], (100 - K[1, 2]) / K[1, 1], 1.0])
        u, v = Kc[0, 0] * X[0] + Kc[0, 2], Kc[1, 1] * X[1] + Kc[1, 2]
        iy, ix = np.unravel_index(crop[..., 0].argmax(), crop.shape[:2])
        assert abs(ix - u) <= 1.0 and abs(iy - v) <= 1.0, (ix, iy, u, v)
    crop = crop_from_frame(frame, (150.5, 100.5, 96.0), 96)
    assert crop[47, 47, 0] == 255 and crop.sum() == 3 * 255


def test_sequence_deterministic():
    takes = TakeBank([Path("walk.bvh")], loader=_walk)
    kw = dict(num_frames=2, frame_size=(160, 120), renderer=BodyRenderer(), takes=takes, seed=1)
    a = render_sequence(SynthConfig(crop_size=64), "val", 0, **kw)
    b = render_sequence(SynthConfig(crop_size=64), "val", 0, **kw)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.crops, b.crops)
