
import numpy as np
import pytest
import torch

from engines.body import BodyModel
from engines.motion.bvh import BVH, read_bvh
from engines.motion.retarget import (
    FAMILIES,
    KNOWN_TAKES,
    _target_joint,
    retarget,
    retarget_file,
)
from engines.paths import mocap_dir

SHARED = mocap_dir()
# one take per skeleton family (training takes only: never the holdout folder)
TAKES = ["cmu_01_01.bvh", "cmu_131_03.bvh", "cmu_05_01.bvh", "cmu_60_12.bvh"]


@pytest.fixture(scope="module")
def body():
    return BodyModel.default()


def _rest(body):
    return body.rest_joints()[0].double().numpy()


def _smpl_joints(body, m, sel):
    with torch.no_grad():
        out = body(
            torch.tensor(m.global_orient[sel]).float(),
            torch.tensor(m.body_pose[sel]).float(),
            torch.zeros(len(sel), 10),
            torch.tensor(m.transl[sel]).float(),
        )
    return out.joints.double().numpy()


@pytest.mark.parametrize("take", TAKES)
def test_bone_directions_match_the_bvh(body, take):
    m = retarget_file(SHARED / take, _rest(body))
    bvh = read_bvh(SHARED / take)
    _, P = bvh.forward_kinematics(KNOWN_TAKES[take][0])
    sel = np.linspace(0, len(m) - 1, 40).astype(int)
    J = _smpl_joints(body, m, sel)
    table = FAMILIES[m.family]
    checked = 0
    for j in range(24):
        t = _target_joint(j, table) if table[j] is not None else -1
        if t < 0:
            continue
        db = P[sel][:, bvh.index(table[t])] - P[sel][:, bvh.index(table[j])]
        if np.linalg.norm(db[0]) < 1e-6:
            continue
        ds = J[:, t] - J[:, j]
        cos = (ds * db).sum(-1) / np.linalg.norm(ds, axis=-1) / np.linalg.norm(db, axis=-1)
        ang = np.degrees(np.arccos(np.clip(cos, -1, 1)))
        assert ang.max() < 1.0, (j, ang.max())  # stated bound: 1 degree
        checked += 1
    assert checked >= 14
    # the pelvis follows the BVH root
    assert np.allclose(J[:, 0], P[sel][:, bvh.index(table[0])], atol=1e-4)
    assert m.fps == KNOWN_TAKES[take][1]


@pytest.mark.parametrize("take", ["cmu_01_01.bvh", "cmu_05_01.bvh"])
def test_rest_frame_maps_near_smpl_rest_facing_plus_z(body, take):
    bvh = read_bvh(SHARED / take)
    zero = BVH(bvh.names, bvh.parents, bvh.offsets, bvh.channels,
               np.zeros((1, bvh.motion.shape[1])), bvh.frame_time)  # fmt: skip
    m = retarget(zero, KNOWN_TAKES[take][0], _rest(body))
    # rest-pose differences between the skeletons stay small: no joint turns more than 45 deg,
    # and the root is upright facing +z
    ang = np.degrees(
        np.linalg.norm(np.concatenate([m.global_orient, m.body_pose], 1).reshape(24, 3), axis=-1)
    )
    assert ang[0] < 15 and ang.max() < 45
    J = _smpl_joints(body, m, [0])[0]
    assert J[16, 0] > J[17, 0]  # left shoulder at +x
    assert J[15, 1] > J[0, 1] > J[7, 1]  # head above pelvis above ankle
    # toes point forward (+z) at rest in the 31-joint family (it has toe joints)
    if take == "cmu_01_01.bvh":
        assert J[10, 2] > J[7, 2]


def test_unknown_skeleton_is_rejected(body):
    bvh = BVH(["root", "a"], [-1, 0], np.array([[0.0, 0, 0], [0, 1, 0]]),
              [["Xrotation"], ["Xrotation"]], np.zeros((2, 2)), 0.1)  # fmt: skip
    with pytest.raises(ValueError, match="unknown BVH skeleton"):
        retarget(bvh, 1.0, _rest(body))
