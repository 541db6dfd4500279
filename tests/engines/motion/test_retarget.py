"""Retargeting CMU BVH onto SMPL: exact on SMPL-skeleton BVHs, bone directions on real takes."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from engines.body import BodyModel
from engines.motion import convert
from engines.motion.bvh import BVH, read_bvh, write_bvh
from engines.motion.retarget import (
    FAMILIES,
    KNOWN_TAKES,
    SMPLMotion,
    bone_direction_errors,
    motion_to_bvh,
    retarget,
    smpl_fk,
)
from engines.rotations import axis_angle_to_matrix
from tests.engines.motion._data import MOCAP, needs_mocap

TAKES = {"A": "cmu_01_01.bvh", "A2": "cmu_131_02.bvh", "B": "cmu_05_01.bvh", "B60": "cmu_60_01.bvh"}


@pytest.fixture(scope="module")
def body():
    return BodyModel.default()


@pytest.fixture(scope="module")
def rest(body):
    return body.rest_joints()[0].double().numpy()


def _random_motion(T: int, seed: int) -> SMPLMotion:
    rng = np.random.default_rng(seed)
    return SMPLMotion(
        "synthetic",
        Rotation.random(T, random_state=seed).as_rotvec(),
        rng.normal(0, 0.4, size=(T, 69)),
        rng.normal(0, 1.0, size=(T, 3)),
        30.0,
        "SMPL",
    )


def _rest_frame(b: BVH) -> BVH:
    return BVH(b.names, b.parents, b.offsets, b.channels, np.zeros((1, b.motion.shape[1])),
               b.frame_time, b.end_sites)  # fmt: skip


def _mats(aa: np.ndarray) -> np.ndarray:
    return axis_angle_to_matrix(torch.from_numpy(aa.reshape(-1, 3))).numpy()


def test_smpl_bvh_round_trip_recovers_known_rotations(tmp_path, rest):
    """SMPL skeleton -> BVH file (known rotations) -> retarget gives the same parameters."""
    m = _random_motion(40, 0)
    b = read_bvh(write_bvh(tmp_path / "smpl.bvh", motion_to_bvh(m, rest, unit=0.01), 9))
    r = retarget(b, 0.01, rest, fps=30.0)
    assert r.family == "SMPL" and len(r) == 40 and r.fps == 30.0
    np.testing.assert_allclose(_mats(r.global_orient), _mats(m.global_orient), atol=1e-6)
    np.testing.assert_allclose(_mats(r.body_pose), _mats(m.body_pose), atol=1e-6)
    np.testing.assert_allclose(r.transl, m.transl, atol=1e-6)


def test_smpl_rest_frame_is_zero_pose(rest):
    m = _random_motion(1, 1)
    r = retarget(_rest_frame(motion_to_bvh(m, rest)), 1.0, rest)
    np.testing.assert_allclose(r.global_orient, 0, atol=1e-9)
    np.testing.assert_allclose(r.body_pose, 0, atol=1e-9)


def test_smpl_fk_matches_body_model(body, rest):
    m = _random_motion(6, 2)
    local = _mats(np.concatenate([m.global_orient, m.body_pose], 1)).reshape(6, 24, 3, 3)
    _, J = smpl_fk(local, rest, m.transl)
    f = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    ref = body(f(m.global_orient), f(m.body_pose), torch.zeros(6, 10), f(m.transl)).joints
    np.testing.assert_allclose(J, ref.double().numpy(), atol=2e-5)


@needs_mocap
@pytest.mark.parametrize("key", list(TAKES))
def test_real_takes_bone_directions(key, body, rest):
    """SMPL posed by the body model follows the BVH bone directions; left stays at +x."""
    name = TAKES[key]
    b = read_bvh(MOCAP / name)
    b = BVH(b.names, b.parents, b.offsets, b.channels, b.motion[::97], b.frame_time, b.end_sites)
    m = retarget(b, KNOWN_TAKES[name][0], rest)
    fr = np.arange(len(m))
    f = lambda x: torch.tensor(x[fr], dtype=torch.float32)  # noqa: E731
    out = body(f(m.global_orient), f(m.body_pose), torch.zeros(len(fr), 10), f(m.transl))
    J = out.joints.double().numpy()
    _, P = b.forward_kinematics(KNOWN_TAKES[name][0])
    table = FAMILIES[m.family]
    err = bone_direction_errors(b, m, rest, fr)  # driven bones, numpy FK
    assert err.shape[1] >= 14 and err.mean() < 0.5 and err.max() < 2.0
    # the same with the real body model (float32): SMPL bone j -> main child vs BVH b(j) -> t(j)
    pairs = [(1, 4, "1", "4"), (4, 7, "4", "7"), (16, 18, "16", "18"), (18, 20, "18", "20"),
             (2, 5, "2", "5"), (17, 19, "17", "19"), (19, 21, "19", "21")]  # fmt: skip
    for j, c, _, _ in pairs:
        d_s = J[:, c] - J[:, j]
        d_b = P[fr, b.index(table[c][0])] - P[fr, b.index(table[j][0])]
        cos = np.sum(d_s * d_b, -1) / np.linalg.norm(d_s, axis=-1) / np.linalg.norm(d_b, axis=-1)
        assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 1.0, (j, c)
    # left side: SMPL's left-right axes follow the BVH's Left*/l* joints
    for lj, rj in [(1, 2), (16, 17)]:
        d_s = J[:, lj] - J[:, rj]
        d_b = P[fr, b.index(table[lj][0])] - P[fr, b.index(table[rj][0])]
        cos = np.sum(d_s * d_b, -1) / np.linalg.norm(d_s, axis=-1) / np.linalg.norm(d_b, axis=-1)
        assert cos.min() > 0.8
    # root trajectory: SMPL mid-hip within a few cm of the BVH mid-hip (scaled), feet near floor
    mid_b = 0.5 * (P[fr, b.index(table[1][0])] + P[fr, b.index(table[2][0])])
    assert np.linalg.norm(0.5 * (J[:, 1] + J[:, 2]) - mid_b, axis=-1).max() < 0.1
    assert -0.1 < J[:, [7, 8], 1].min() < 0.25


@needs_mocap
@pytest.mark.parametrize("key", ["A", "A2", "B"])
def test_rest_frame_maps_to_rest_up_to_correction(key, rest):
    b = _rest_frame(read_bvh(MOCAP / TAKES[key]))
    r = retarget(b, KNOWN_TAKES[TAKES[key]][0], rest)
    np.testing.assert_allclose(r.global_orient, 0, atol=1e-12)  # the BVH rest is upright, +z
    ang = np.degrees(np.linalg.norm(r.body_pose.reshape(23, 3), axis=-1))
    _, J = smpl_fk(_mats(np.concatenate([r.global_orient, r.body_pose], 1))[None], rest)
    assert J[0, [1, 4, 7, 13, 16, 18, 20], 0].min() > 0  # left joints at +x
    assert J[0, [2, 5, 8, 14, 17, 19, 21], 0].max() < 0
    assert np.all(J[0, [10, 11], 2] > J[0, [7, 8], 2])  # toes forward (+z)
    if key == "B":  # near T-pose: only small rest corrections
        assert ang.max() < 20
    if key == "A2":  # arms hang down at rest: shoulders rotate ~90+ deg
        assert ang[15] > 80 and ang[16] > 80
        assert J[0, 20, 1] < J[0, 16, 1] - 0.3
    err = bone_direction_errors(b, r, rest)
    assert err.max() < 1e-4


def test_unknown_skeleton_rejected(rest):
    b = BVH(["x"], [-1], np.zeros((1, 3)), [["Xrotation"]], np.zeros((1, 1)), 0.1)
    with pytest.raises(ValueError, match="unknown BVH skeleton"):
        retarget(b, 1.0, rest)
    with pytest.raises(ValueError, match="rest_joints"):
        retarget(b, 1.0, rest[:10])


@needs_mocap
def test_convert_cli(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "holdout").mkdir()
    for n in ("cmu_08_08.bvh", "cmu_13_32.bvh"):
        (src / n).symlink_to(MOCAP / n)
    (src / "holdout" / "cmu_16_36.bvh").symlink_to(MOCAP / "holdout" / "cmu_16_36.bvh")
    out = tmp_path / "out"
    assert convert.main(["--src", str(src), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cmu_08_08.npz", "cmu_13_32.npz"]
    m = SMPLMotion.load(out / "cmu_08_08.npz")
    assert m.body_pose.shape == (284, 69) and m.fps == 120 and m.family == "B"
