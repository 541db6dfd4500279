"""BodyModel: shipped model, smplx compatibility, geometry conventions, loading and errors."""

import math
import os
import pickle

import numpy as np
import pytest
import scipy.sparse
import torch

from engines.body import DEFAULT_MODEL_PATH, JOINT_NAMES, BodyModel

J = {n: i for i, n in enumerate(JOINT_NAMES)}


@pytest.fixture(scope="module")
def model():
    return BodyModel.default()


def _pose(B=1, **joints):
    """body_pose [B, 69] with the given joints set (axis-angle)."""
    bp = torch.zeros(B, 69)
    for name, aa in joints.items():
        j = J[name] - 1
        bp[:, 3 * j : 3 * j + 3] = torch.tensor(aa)
    return bp


def _run(model, body_pose=None, betas=None, B=1):
    z = torch.zeros(B, 3)
    return model(z, torch.zeros(B, 69) if body_pose is None else body_pose,
                 torch.zeros(B, 10) if betas is None else betas, z)  # fmt: skip


def test_default_model_contents(model):
    assert model.num_vertices > 10000
    assert model.num_betas == 10
    assert model.faces.shape[1] == 3 and model.faces.max() < model.num_vertices
    assert model.parents.tolist()[:4] == [-1, 0, 0, 0]
    assert len(JOINT_NAMES) == 24 and JOINT_NAMES[15] == "head"
    assert model.posedirs is None  # zeros are skipped
    kp = model.keypoint_vertex_map
    for k in ("nose", "leye", "reye", "LBigToe", "RHeel", "lthumb", "rpinky"):
        assert k in kp
    assert DEFAULT_MODEL_PATH.stat().st_size < 4_000_000


def test_tpose_rest_and_axes(model):
    out = _run(model)
    j, v = out.joints[0], out.vertices[0]
    for side, sgn in (("left", 1), ("right", -1)):
        sh, el, wr = (j[J[f"{side}_{n}"]] for n in ("shoulder", "elbow", "wrist"))
        assert abs(wr[1] - sh[1]) < 0.02 and abs(wr[2] - sh[2]) < 0.02  # arm along x
        assert sgn * sh[0] > 0.1 and sgn * (el[0] - sh[0]) > 0.2 and sgn * (wr[0] - el[0]) > 0.2
        hip, knee, ankle = (j[J[f"{side}_{n}"]] for n in ("hip", "knee", "ankle"))
        assert sgn * hip[0] > 0.03  # subject's left is +x
        assert hip[1] > knee[1] + 0.3 > ankle[1] + 0.6  # legs straight down, y up
        assert abs(knee[0] - ankle[0]) < 0.03
    assert j[J["head"], 1] > j[J["neck"], 1] > j[J["spine3"], 1] > j[J["pelvis"], 1]
    # Pelvis ~9 cm above the hip joints.
    hips = 0.5 * (j[J["left_hip"]] + j[J["right_hip"]])
    assert 0.05 < (j[J["pelvis"], 1] - hips[1]) < 0.13
    # Faces +z: nose and toes in front of the pelvis / ankles.
    nose = v[model.keypoint_vertex_map["nose"]]
    assert nose[2] > j[J["head"], 2] + 0.05 and nose[1] > j[J["neck"], 1]
    assert j[J["left_foot"], 2] > j[J["left_ankle"], 2] + 0.08
    assert v[model.keypoint_vertex_map["LBigToe"], 2] > j[J["left_ankle"], 2] + 0.1
    # Mean stature plausible.
    assert 1.55 < float(v[:, 1].max() - v[:, 1].min()) < 1.85


def test_arms_down_and_knee_bend(model):
    bp = _pose(left_shoulder=(0, 0, -math.pi / 2), right_shoulder=(0, 0, math.pi / 2),
               left_knee=(math.pi / 2, 0, 0))  # fmt: skip
    j = _run(model, bp).joints[0]
    for side in ("left", "right"):
        sh, wr = j[J[f"{side}_shoulder"]], j[J[f"{side}_wrist"]]
        assert wr[1] < sh[1] - 0.4 and abs(wr[0] - sh[0]) < 0.05
    knee, ankle = j[J["left_knee"]], j[J["left_ankle"]]
    assert ankle[2] < knee[2] - 0.3 and abs(ankle[1] - knee[1]) < 0.05  # ankle behind knee


def test_stature_grows_with_beta0(model):
    betas = torch.zeros(3, 10)
    betas[:, 0] = torch.tensor([-2.0, 0.0, 2.0])
    v = _run(model, betas=betas, B=3).vertices
    h = v[..., 1].amax(1) - v[..., 1].amin(1)
    assert h[0] < h[1] - 0.05 and h[2] > h[1] + 0.05


def test_global_orient_and_transl(model):
    t = torch.tensor([[0.3, -0.2, 5.0]])
    go = torch.tensor([[math.pi, 0.0, 0.0]])
    out = model(go, torch.zeros(1, 69), torch.zeros(1, 10), t)
    rest = _run(model)
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    p0 = rest.joints[0, :1]  # the root rotates about the pelvis joint
    expected = (rest.joints[0] - p0) @ R.T + p0 + t
    torch.testing.assert_close(out.joints[0], expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.joint_transforms[0, :, :3, 3], out.joints[0])


def test_vertex_subset(model):
    g = torch.Generator().manual_seed(0)
    bp = 0.4 * torch.randn(2, 69, generator=g)
    betas = torch.randn(2, 10, generator=g)
    ids = torch.tensor([0, 10, 500, model.num_vertices - 1])
    full = model(torch.zeros(2, 3), bp, betas, torch.zeros(2, 3))
    sub = model(torch.zeros(2, 3), bp, betas, torch.zeros(2, 3), vertex_ids=ids)
    assert sub.vertices.shape == (2, 4, 3)
    torch.testing.assert_close(sub.vertices, full.vertices[:, ids])


def test_loads_in_smplx_with_same_vertices(model):
    smplx = pytest.importorskip("smplx")
    from smplx.utils import Struct

    data = dict(np.load(DEFAULT_MODEL_PATH, allow_pickle=False))
    ref = smplx.SMPL(model_path="", data_struct=Struct(**data), num_betas=10,
                     vertex_ids=model.keypoint_vertex_map, dtype=torch.float64)  # fmt: skip
    ours = BodyModel.default().double()
    g = torch.Generator().manual_seed(1)
    go = 0.5 * torch.randn(2, 3, generator=g, dtype=torch.float64)
    bp = 0.5 * torch.randn(2, 69, generator=g, dtype=torch.float64)
    betas = torch.randn(2, 10, generator=g, dtype=torch.float64)
    tr = torch.randn(2, 3, generator=g, dtype=torch.float64)
    r = ref(global_orient=go, body_pose=bp, betas=betas, transl=tr)
    o = ours(go, bp, betas, tr)
    torch.testing.assert_close(o.vertices, r.vertices, atol=1e-6, rtol=0)
    torch.testing.assert_close(o.joints, r.joints[:, :24], atol=1e-6, rtol=0)


def test_forward_input_errors(model):
    z3, bp, b = torch.zeros(2, 3), torch.zeros(2, 69), torch.zeros(2, 10)
    with pytest.raises(ValueError, match="body_pose"):
        model(z3, torch.zeros(2, 72), b, z3)
    with pytest.raises(ValueError, match="betas"):
        model(z3, bp, torch.zeros(2, 5), z3)
    with pytest.raises(ValueError, match="transl"):
        model(z3, bp, b, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="global_orient"):
        model(torch.zeros(2, 4), bp, b, z3)
    with pytest.raises(ValueError, match="float"):
        model(z3.double(), bp, b, z3)
    with pytest.raises(ValueError, match="vertex_ids"):
        model(z3, bp, b, z3, vertex_ids=torch.tensor([1.0]))


def test_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.npz"):
        BodyModel.from_file(tmp_path / "nope.npz")
    data = dict(np.load(DEFAULT_MODEL_PATH, allow_pickle=False))
    bad = {k: v for k, v in data.items() if k != "J_regressor"}
    np.savez(tmp_path / "missing.npz", **bad)
    with pytest.raises(ValueError, match=r"missing\.npz.*J_regressor"):
        BodyModel.from_file(tmp_path / "missing.npz")
    bad = dict(data, weights=data["weights"][:, :10])
    np.savez(tmp_path / "shape.npz", **bad)
    with pytest.raises(ValueError, match=r"'weights' has shape"):
        BodyModel.from_file(tmp_path / "shape.npz")
    (tmp_path / "model.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported"):
        BodyModel.from_file(tmp_path / "model.txt")


def test_smpl_style_pickle(tmp_path, model):
    """An SMPL-style pkl (numpy arrays, sparse J_regressor) loads, with a pickle warning."""
    data = dict(np.load(DEFAULT_MODEL_PATH, allow_pickle=False))
    pk = {
        k: data[k] for k in ("v_template", "shapedirs", "posedirs", "weights", "kintree_table", "f")
    }
    pk["J_regressor"] = scipy.sparse.csc_matrix(data["J_regressor"].astype(np.float64))
    path = tmp_path / "SMPL_TEST.pkl"
    path.write_bytes(pickle.dumps(pk, protocol=2))
    with pytest.warns(UserWarning, match="pickle"):
        m = BodyModel.from_file(path)
    torch.testing.assert_close(m.J_regressor, model.J_regressor)
    torch.testing.assert_close(_run(m).vertices, _run(model).vertices)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"v_template": _Evil()}))
    with pytest.warns(UserWarning), pytest.raises(pickle.UnpicklingError, match="refused"):
        BodyModel.from_file(path)


def test_chumpy_pickle_without_chumpy(tmp_path, monkeypatch, model):
    """SMPL pkls hold chumpy arrays; they load through stubs without chumpy installed."""
    import sys
    import types

    fake = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    fake.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    monkeypatch.setitem(sys.modules, "chumpy.ch", fake)
    data = dict(np.load(DEFAULT_MODEL_PATH, allow_pickle=False))
    pk = {k: data[k] for k in ("v_template", "weights", "kintree_table", "f", "J_regressor")}
    pk["shapedirs"] = Ch(data["shapedirs"])
    pk["posedirs"] = Ch(data["posedirs"])
    path = tmp_path / "SMPL_CHUMPY.pkl"
    path.write_bytes(pickle.dumps(pk, protocol=2))
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    monkeypatch.delitem(sys.modules, "chumpy")
    with pytest.warns(UserWarning, match="pickle"):
        m = BodyModel.from_file(path)
    torch.testing.assert_close(m.shapedirs, model.shapedirs)
