import numpy as np
import pytest
import torch

from engines.body import JOINT_NAMES, BodyModel
from engines.export_bvh import AXES, export_track_bvh, main, track_ids
from engines.motion.bvh import read_bvh
from pipeline.messages import FrameMessage, Person
from stages.sinks import NpzSink


@pytest.fixture(scope="module")
def body():
    return BodyModel.default()


def write_npz(path, body, T=6, skip=(3,)):
    """Two tracks; track 1 has fixed betas, is missing on frames ``skip``; 25 fps."""
    rng = np.random.default_rng(0)
    betas = rng.normal(0, 1, 10).astype(np.float32)
    sink = NpzSink(path)
    poses = {}
    for t in range(T):
        persons = [Person(2, "tracking", np.zeros(4, np.float32), 0.9)]  # never fitted
        if t not in skip:
            go = (np.array([np.pi, 0, 0]) + rng.normal(0, 0.3, 3)).astype(np.float32)
            bp = rng.normal(0, 0.3, 69).astype(np.float32)
            tr = np.array([0.1 * t, 0.2, 3.0], np.float32)
            poses[t] = (go, bp, tr)
            kw = {"global_orient": go, "body_pose": bp, "betas": betas, "transl": tr}
            persons.append(Person(1, "tracking", np.zeros(4, np.float32), 0.9, **kw))
        sink.write(FrameMessage("cam0", t, t / 25.0, None, persons=persons))
    sink.close()
    return poses, betas


@pytest.mark.parametrize(("up", "units"), [("y", "m"), ("z", "cm")])
def test_round_trip(tmp_path, body, up, units):
    npz = tmp_path / "poses.npz"
    poses, betas = write_npz(npz, body)
    assert track_ids(npz) == [1]
    out = export_track_bvh(npz, 1, tmp_path / "t.bvh", up=up, units=units, body=body)
    bvh = read_bvh(out)
    assert bvh.num_frames == 6 and bvh.frame_time == pytest.approx(0.04)
    _, P = bvh.forward_kinematics(1.0 if units == "m" else 0.01)
    idx = [bvh.index(n) for n in JOINT_NAMES]
    ts = sorted(poses)
    f = lambda a: torch.from_numpy(np.stack(a))  # noqa: E731
    ref = body(f([poses[t][0] for t in ts]), f([poses[t][1] for t in ts]),
               torch.from_numpy(np.tile(betas, (len(ts), 1))),
               f([poses[t][2] for t in ts])).joints.double().numpy()  # fmt: skip
    ref = ref @ AXES[up].T
    err = np.abs(P[ts][:, idx] - ref).max()
    assert err < 1e-3, err
    # the missing frame is interpolated between its neighbours (root halfway)
    np.testing.assert_allclose(P[3, idx[0]], 0.5 * (P[2, idx[0]] + P[4, idx[0]]), atol=1e-6)
    up_axis = {"y": 1, "z": 2}[up]  # head above pelvis in the chosen up axis
    assert (P[ts][:, idx[15], up_axis] > P[ts][:, idx[0], up_axis]).mean() > 0.5


def test_cli_and_errors(tmp_path, body, monkeypatch, capsys):
    monkeypatch.setattr(BodyModel, "default", classmethod(lambda cls, num_betas=10: body))
    npz = tmp_path / "poses.npz"
    write_npz(npz, body, T=3, skip=())
    assert main([str(npz), "--out", str(tmp_path / "x_{track}.bvh")]) == 0
    assert read_bvh(tmp_path / "x_1.bvh").num_frames == 3
    assert main([str(npz), "--track", "2", "--out", str(tmp_path / "y.bvh")]) == 2
    assert "no fitted frames" in capsys.readouterr().err
    with pytest.raises(ValueError, match="up must be"):
        export_track_bvh(npz, 1, tmp_path / "z.bvh", up="x", body=body)
