import numpy as np
import pytest

from engines.motion.bvh import BVH, euler_to_matrix, matrix_to_euler, read_bvh, write_bvh
from engines.paths import mocap_dir

SHARED = str(mocap_dir())


@pytest.mark.parametrize("order", ["XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"])
def test_euler_round_trip(order):
    a = np.random.default_rng(0).uniform(-85, 85, (50, 3))
    R = euler_to_matrix(a, order)
    assert np.allclose(matrix_to_euler(R, order), a, atol=1e-9)


def test_euler_order_is_listed_order():
    # ZXY with only X = 90: rotates y to z (column vectors)
    R = euler_to_matrix(np.array([[0.0, 90.0, 0.0]]), "ZXY")[0]
    assert np.allclose(R @ [0, 1, 0], [0, 0, 1], atol=1e-12)


def _two_bone(motion):
    return BVH(
        names=["root", "mid", "mid_end"],
        parents=[-1, 0, 1],
        offsets=np.array([[0.0, 0, 0], [0, 1.0, 0], [0, 1.0, 0]]),
        channels=[["Xposition", "Yposition", "Zposition", "Zrotation", "Xrotation", "Yrotation"],
                  ["Zrotation", "Xrotation", "Yrotation"], []],
        motion=motion,
        frame_time=1 / 30,
        end_sites={2},
    )  # fmt: skip


def test_forward_kinematics_known_rotation():
    # root at (1, 0, 0), mid bent 90 degrees about z: the end points along -x from mid
    bvh = _two_bone(np.array([[1.0, 0, 0, 0, 0, 0, 90.0, 0, 0]]))
    _, P = bvh.forward_kinematics()
    assert np.allclose(P[0, 1], [1, 1, 0])
    assert np.allclose(P[0, 2], [0, 1, 0], atol=1e-12)
    _, P2 = bvh.forward_kinematics(scale=0.5)
    assert np.allclose(P2[0, 2], [0, 0.5, 0], atol=1e-12)


def test_write_read_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    bvh = _two_bone(np.column_stack([rng.normal(size=(7, 3)), rng.uniform(-90, 90, (7, 6))]))
    path = write_bvh(tmp_path / "a.bvh", bvh, precision=9)
    back = read_bvh(path)
    assert back.names == bvh.names and back.parents == bvh.parents
    assert back.end_sites == {2}
    assert np.allclose(back.motion, bvh.motion, atol=1e-8)
    assert np.allclose(back.forward_kinematics()[1], bvh.forward_kinematics()[1], atol=1e-8)


def test_real_takes_parse():
    a = read_bvh(f"{SHARED}/cmu_01_01.bvh")
    b = read_bvh(f"{SHARED}/cmu_05_01.bvh")
    assert a.num_frames == 2752 and a.names[0] == "Hips"
    assert b.num_frames == 599 and b.names[0] == "hip"
    assert b.frame_time == pytest.approx(1 / 120, rel=1e-3)


def test_malformed_files_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_bvh(tmp_path / "missing.bvh")
    bad = tmp_path / "bad.bvh"
    bad.write_text("HELLO")
    with pytest.raises(ValueError, match=r"bad\.bvh.*HIERARCHY"):
        read_bvh(bad)
    src = tmp_path / "t.bvh"
    write_bvh(src, _two_bone(np.zeros((3, 9))))
    truncated = tmp_path / "trunc.bvh"
    truncated.write_text(src.read_text()[:-20])
    with pytest.raises(ValueError, match="frames"):
        read_bvh(truncated)
