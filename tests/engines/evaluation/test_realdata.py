"""The SPIN/mmhuman3d-style loader on a file and images written here."""

import cv2
import numpy as np
import pytest
import torch

from engines.body import BodyModel
from engines.evaluation.realdata import LSP_TO_SMPL, RealDataset

S = 64


@pytest.fixture(scope="module")
def body():
    return BodyModel.default()


def _write(tmp_path, n=3):
    rng = np.random.default_rng(0)
    names = ["seqA/img_0000.png", "seqA/img_0001.png", "seqB/img_0000.png"][:n]
    H, W = 120, 160
    center = np.array([[80.0, 60.0], [70.0, 55.0], [90.0, 64.0]])[:n]
    scale = np.array([0.5, 0.4, 0.45])[:n]  # sides 100, 80, 90 px
    for name in names:
        img = np.full((H, W, 3), 40, np.uint8)
        img[50:70, 70:90] = (0, 0, 255)  # BGR red square around (80, 60)
        p = tmp_path / "images" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(p), img)
    part = np.concatenate([rng.uniform(20, 140, (n, 24, 2)), np.ones((n, 24, 1))], axis=2)
    part[1, 3, 2] = 0  # left hip unannotated in frame 1
    part[2, 0, :2] = (500.0, 60.0)  # right ankle outside the crop in frame 2
    pose = rng.normal(0, 0.2, (n, 72)).astype(np.float32)
    pose[:, 0] = np.pi
    np.savez(
        tmp_path / "test.npz", imgname=np.array(names), center=center, scale=scale, pose=pose,
        shape=rng.normal(0, 0.5, (n, 10)), part=part,
    )  # fmt: skip
    return tmp_path / "test.npz", tmp_path / "images", part, pose


def test_loader_crops_and_ground_truth(tmp_path, body):
    npz, root, part, pose = _write(tmp_path)
    ds = RealDataset(npz, root, S, body=body)
    assert len(ds) == 3
    f = ds.frame(0)  # window centre (80, 60), side 100 -> the red square is at the crop centre
    assert f.image.shape == (S, S, 3)
    c = S // 2
    assert tuple(f.image[c, c]) == (255, 0, 0)  # RGB
    assert tuple(f.image[2, 2]) == (40, 40, 40)
    # crop camera: frame centre (79.5, 59.5) -> crop (u - 30) * 0.64 - 0.5
    assert f.K[0, 0] == pytest.approx(160 * 0.64)
    assert f.K[0, 2] == pytest.approx((79.5 - 30) * 0.64 - 0.5)
    uv = (part[0, :, :2] - np.array([30.0, 10.0])) * 0.64 - 0.5
    for src, dst in LSP_TO_SMPL:
        np.testing.assert_allclose(f.joints2d[dst], uv[src])
    assert np.isnan(f.joints2d[0]).all() and not f.visible2d[0] and f.visible[0]
    assert f.head_size == pytest.approx(np.linalg.norm(uv[12] - uv[13]))
    p = torch.from_numpy(pose[:1])
    j = body(p[:, :3], p[:, 3:], torch.from_numpy(ds.shape[:1])).joints[0].numpy()
    np.testing.assert_allclose(f.joints3d, j, atol=1e-6)
    f1, f2 = ds.frame(1), ds.frame(2)
    assert not f1.visible2d[1] and f1.visible[1]  # unannotated: no PCKh, still in 3D metrics
    assert not f2.visible[8] and not f2.visible2d[8]  # outside the crop: excluded
    seqs = ds.sequences()
    assert [s.name for s in seqs] == ["seqA", "seqB"] and [len(s.frames) for s in seqs] == [2, 1]
    np.testing.assert_allclose(seqs[0].frames[1].joints3d, f1.joints3d, atol=1e-6)


def test_loader_rejects_bad_files(tmp_path, body):
    np.savez(tmp_path / "obj.npz", imgname=np.array(["a", None], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        RealDataset(tmp_path / "obj.npz", tmp_path, S, body=body)
    np.savez(tmp_path / "bad.npz", imgname=np.array(["a"]), center=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="center"):
        RealDataset(tmp_path / "bad.npz", tmp_path, S, body=body)
    npz, _, _, _ = _write(tmp_path)
    with pytest.raises(OSError):
        RealDataset(npz, tmp_path / "nowhere", S, body=body).frame(0)
