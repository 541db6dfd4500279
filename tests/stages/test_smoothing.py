import numpy as np
import torch

from engines.rotations import axis_angle_to_matrix
from pipeline.messages import Person
from stages.smoothing import SmoothingParams, TrackSmoother


def person(go, bp=None, transl=(0, 0, 3)):
    bp = np.zeros(69, np.float32) if bp is None else bp
    return Person(
        1,
        "tracking",
        np.zeros(4, np.float32),
        1.0,
        global_orient=np.asarray(go, np.float32),
        body_pose=bp.astype(np.float32),
        transl=np.asarray(transl, np.float32),
    )


def angle_between(aa1, aa2):
    R1 = axis_angle_to_matrix(torch.tensor(np.asarray(aa1, np.float64)).reshape(-1, 3))
    R2 = axis_angle_to_matrix(torch.tensor(np.asarray(aa2, np.float64)).reshape(-1, 3))
    tr = (R1.transpose(-1, -2) @ R2).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.arccos(((tr - 1) / 2).clamp(-1, 1)).numpy()


def test_constant_pose_passes_through():
    sm = TrackSmoother(SmoothingParams(enabled=True))
    rng = np.random.default_rng(0)
    bp = rng.normal(0, 0.3, 69)
    for i in range(10):
        out = sm(person([0.3, -1.0, 0.2], bp.copy()), i / 30)
    np.testing.assert_allclose(out.global_orient, [0.3, -1.0, 0.2], atol=1e-5)
    np.testing.assert_allclose(out.body_pose, bp, atol=1e-5)
    np.testing.assert_allclose(out.transl, [0, 0, 3], atol=1e-6)


def test_jitter_is_reduced_on_rotations_and_translation():
    sm = TrackSmoother(SmoothingParams(enabled=True, min_cutoff=1.0, beta=0.0))
    rng = np.random.default_rng(1)
    base = np.array([0.5, 0.2, -0.1])
    raw, out = [], []
    for i in range(90):
        go = base + rng.normal(0, 0.05, 3)
        raw.append(go)
        p = sm(person(go, transl=np.array([0.0, 0.0, 3.0]) + rng.normal(0, 0.05, 3)), i / 30)
        out.append(p.global_orient.astype(np.float64))
    raw_jit = angle_between(raw[30:-1], raw[31:]).mean()
    out_jit = angle_between(out[30:-1], out[31:]).mean()
    assert out_jit < 0.3 * raw_jit
    assert angle_between(out[30:], [base] * 60).mean() < angle_between(raw[30:], [base] * 60).mean()


def test_filtering_is_on_rotations_not_axis_angle_components():
    # A rotation near 180 degrees about x whose axis-angle flips sign from frame to frame:
    # averaging components would head for the zero vector (identity, 180 degrees off).
    sm = TrackSmoother(SmoothingParams(enabled=True, min_cutoff=0.5, beta=0.0))
    for i in range(30):
        sign = 1 if i % 2 == 0 else -1
        out = sm(person([sign * (np.pi - 0.01), 0, 0]), i / 30)
        assert angle_between(out.global_orient, [np.pi, 0, 0])[0] < 0.05
    assert np.linalg.norm(out.global_orient) > 3.0
