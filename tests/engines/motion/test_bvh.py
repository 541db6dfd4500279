"""BVH reader / writer / forward kinematics on real CMU takes and synthetic files."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from engines.motion.bvh import (
    BVH,
    bvh_from_rotations,
    euler_to_matrix,
    matrix_to_euler,
    read_bvh,
    write_bvh,
)
from tests.engines.motion._data import MOCAP, needs_mocap


@pytest.mark.parametrize("order", ["ZYX", "ZXY", "XYZ", "YXZ"])
def test_euler_matches_scipy_and_round_trips(order):
    rng = np.random.default_rng(0)
    a = rng.uniform(-170, 170, size=(200, 3))
    a[:, 1] = rng.uniform(-85, 85, size=200)
    R = euler_to_matrix(a, order)
    ref = Rotation.from_euler(order, a, degrees=True).as_matrix()  # intrinsic: Ra @ Rb @ Rc
    np.testing.assert_allclose(R, ref, atol=1e-12)
    np.testing.assert_allclose(matrix_to_euler(R, order), a, atol=1e-7)


@needs_mocap
@pytest.mark.parametrize(
    ("name", "joints", "frames", "root"),
    [("cmu_01_01.bvh", 31, 2752, "Hips"), ("cmu_05_01.bvh", 43, 599, "hip")],
)
def test_read_real_takes(name, joints, frames, root):
    b = read_bvh(MOCAP / name)
    assert b.names[0] == root and b.parents[0] == -1
    assert len(b.names) - len(b.end_sites) == joints
    assert b.num_frames == frames
    assert b.frame_time == pytest.approx(1 / 120, rel=1e-3)
    assert len(b.channels[0]) == 6
    G, P = b.forward_kinematics(0.01)
    assert G.shape == (frames, len(b.names), 3, 3) and P.shape == (frames, len(b.names), 3)
    np.testing.assert_allclose(G[5] @ np.swapaxes(G[5], -1, -2), np.broadcast_to(np.eye(3),
                               G[5].shape), atol=1e-12)  # fmt: skip
    # bone lengths are preserved by FK
    lengths = np.linalg.norm(P[:, 1:] - P[:, b.parents[1:]], axis=-1)
    np.testing.assert_allclose(lengths, lengths[:1].repeat(frames, 0), atol=1e-9)


@needs_mocap
def test_write_read_round_trip_real(tmp_path):
    b = read_bvh(MOCAP / "cmu_05_01.bvh")
    b2 = read_bvh(write_bvh(tmp_path / "x.bvh", b))
    assert b2.names == b.names and b2.parents == b.parents and b2.channels == b.channels
    assert b2.end_sites == b.end_sites and b2.frame_time == pytest.approx(b.frame_time)
    np.testing.assert_allclose(b2.offsets, b.offsets, atol=1e-6)
    np.testing.assert_allclose(b2.motion, b.motion, atol=1e-6)
    np.testing.assert_allclose(b2.forward_kinematics(0.01)[1], b.forward_kinematics(0.01)[1],
                               atol=1e-6)  # fmt: skip


def test_synthetic_known_rotations(tmp_path):
    """A chain written from known local rotations (joints listed in non depth-first order)
    reads back with the same global positions, computed here by hand."""
    names = ["root", "a", "b", "a2"]
    parents = [-1, 0, 0, 1]
    offsets = np.array([[0, 0, 0], [1.0, 0, 0], [0, 2.0, 0], [0, 0, 3.0]])
    rng = np.random.default_rng(1)
    R = Rotation.random(5 * 4, random_state=1).as_matrix().reshape(5, 4, 3, 3)
    root = rng.normal(size=(5, 3))
    bvh = bvh_from_rotations(names, parents, offsets, R, root, 1 / 30, "ZXY", {3: [0, 1.0, 0]})
    b2 = read_bvh(write_bvh(tmp_path / "s.bvh", bvh, precision=9))
    assert b2.names == ["root", "a", "a2", "a2_end", "b"]
    G, P = b2.forward_kinematics(1.0)
    i = {n: k for k, n in enumerate(b2.names)}
    Ga = R[:, 0] @ R[:, 1]
    np.testing.assert_allclose(P[:, i["a"]], root + R[:, 0] @ offsets[1], atol=1e-7)
    np.testing.assert_allclose(P[:, i["b"]], root + R[:, 0] @ offsets[2], atol=1e-7)
    np.testing.assert_allclose(P[:, i["a2"]], P[:, i["a"]] + Ga @ offsets[3], atol=1e-7)
    np.testing.assert_allclose(G[:, i["a2"]], Ga @ R[:, 3], atol=1e-7)
    np.testing.assert_allclose(P[:, i["a2_end"]], P[:, i["a2"]] + G[:, i["a2"]] @ [0, 1.0, 0],
                               atol=1e-7)  # fmt: skip


def test_six_channel_child_and_rest(tmp_path):
    text = """HIERARCHY
ROOT r
{
  OFFSET 1 0 0
  CHANNELS 3 Xposition Yposition Zposition
  JOINT c
  {
    OFFSET 0 1 0
    CHANNELS 6 Zrotation Xposition Yposition Zposition Xrotation Yrotation
    End Site
    {
      OFFSET 0 0 1
    }
  }
}
MOTION
Frames: 1
Frame Time: 0.5
0 0 0 90 0.5 0 0 0 0
"""
    p = tmp_path / "c.bvh"
    p.write_text(text)
    b = read_bvh(p)
    G, P = b.forward_kinematics(2.0)
    np.testing.assert_allclose(P[0, 1], [2 + 1.0, 2.0, 0], atol=1e-12)  # offset + translation
    np.testing.assert_allclose(G[0, 1], euler_to_matrix(np.array([[90.0, 0, 0]]), "ZXY")[0])
    np.testing.assert_allclose(P[0, 2], P[0, 1] + 2 * G[0, 1] @ [0, 0, 1.0], atol=1e-12)
    np.testing.assert_allclose(b.rest_positions(2.0), [[2, 0, 0], [2, 2, 0], [2, 2, 2]])


@pytest.mark.parametrize(
    "text", ["", "HIERARCHY\nROOT r\n{\n OFFSET 0 0\n", "HIERARCHY\nROOT r\n{\n}\nMOTION\n"]
)
def test_malformed_raises(tmp_path, text):
    p = tmp_path / "bad.bvh"
    p.write_text(text)
    with pytest.raises(ValueError, match="malformed BVH"):
        read_bvh(p)


def test_bvh_from_rotations_checks_shapes():
    with pytest.raises(ValueError, match="local_rotations"):
        bvh_from_rotations(["r"], [-1], np.zeros((1, 3)), np.zeros((2, 2, 3, 3)),
                           np.zeros((2, 3)), 0.1)  # fmt: skip
    assert isinstance(bvh_from_rotations(["r"], [-1], np.zeros((1, 3)), np.eye(3)[None, None],
                                         np.zeros((1, 3)), 0.1), BVH)  # fmt: skip
