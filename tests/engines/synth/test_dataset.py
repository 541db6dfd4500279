import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.synth.dataset import SynthConfig, SynthDataset
from engines.synth.poses import (
    MIRROR_PERM,
    VAL_TAKES,
    PoseSequence,
    TakeBank,
    default_mocap_dir,
    mirror_pose,
    split_takes,
)
from engines.synth.scene import BodyRenderer


def _walk(path: Path) -> PoseSequence:
    """A procedural walk-like pose sequence (swinging hips and knees, turning, moving)."""
    T = 120
    t = torch.arange(T, dtype=torch.float32) / 60.0
    ph = 2 * math.pi * t + zlib.crc32(path.name.encode()) % 7
    bp = torch.zeros(T, 69)
    bp[:, 0], bp[:, 3] = 0.5 * torch.sin(ph), -0.5 * torch.sin(ph)
    bp[:, 9], bp[:, 12] = 0.3 * (1 - torch.cos(ph)), 0.3 * (1 + torch.cos(ph))
    bp[:, 47], bp[:, 50] = -1.2, 1.2
    go = torch.zeros(T, 3)
    go[:, 1] = 0.5 * t
    tr = torch.stack([torch.zeros(T), torch.zeros(T), 1.2 * t], 1)
    return PoseSequence(path.name, go, bp, tr, 60.0)


@pytest.fixture(scope="module")
def renderer():
    return BodyRenderer()


def _ds(renderer, split="train", **kw):
    cfg = SynthConfig(crop_size=128, **kw)
    takes = TakeBank([Path(f"{split}_{i}.bvh") for i in range(3)], loader=_walk)
    return SynthDataset(cfg, split, renderer=renderer, takes=takes)


def test_config_rejects_unknown_and_bad_values():
    with pytest.raises(ValueError, match="unknown"):
        SynthConfig.from_dict({"crop_size": 128, "bogus": 1})
    with pytest.raises(ValueError, match="multiple"):
        SynthConfig(crop_size=130)
    with pytest.raises(ValueError, match="occlusion_prob"):
        SynthConfig(occlusion_prob=1.5)
    c = SynthConfig.from_dict({"crop_size": 256, "distance": [3, 5]})
    assert c.distance == (3, 5) and c.crop_size == 256


def test_deterministic_by_seed_and_index(renderer):
    a = _ds(renderer)
    b = _ds(renderer)
    for i in (0, 7):
        sa, sb = a[i], b[i]
        assert sa.keys() == sb.keys()
        for k in sa:
            if isinstance(sa[k], torch.Tensor):
                assert torch.equal(sa[k], sb[k]), k
            else:
                assert sa[k] == sb[k], k
    c = _ds(renderer, seed=1)
    assert not torch.equal(a[0]["image"], c[0]["image"])
    assert not torch.equal(a[0]["image"], a[1]["image"])


def test_ground_truth_consistency(renderer):
    ds = _ds(renderer, occlusion_prob=1.0)
    for i in range(4):
        s = ds[i]
        S = 128
        K = s["K"].double()
        j3 = s["joints3d"].double()
        uv = (j3 @ K.T)[:, :2] / j3[:, 2:]
        torch.testing.assert_close(s["joints2d"].double(), uv, atol=1e-3, rtol=0)
        # joints3d come from the camera-frame parameters
        out = renderer.body(
            s["global_orient"][None], s["body_pose"][None], s["betas"][None], s["transl"][None]
        )
        torch.testing.assert_close(out.joints[0], s["joints3d"], atol=1e-5, rtol=0)
        sil = s["silhouette"]
        assert sil.shape == (S, S) and sil.any()
        assert torch.equal(s["part_map"] > 0, sil)
        assert s["part_map"].max() <= 24
        # camera in front of the body
        assert (s["joints3d"][:, 2] > 1.0).all()
        assert s["image"].shape == (S, S, 3) and s["image"].dtype == torch.uint8
        # occluder coverage and occluded joints
        occ = s["occluder_mask"]
        cov = (occ & sil).sum().item() / sil.sum().item()
        assert cov == pytest.approx(s["occluder_coverage"], abs=1e-6)
        assert 0.09 <= cov <= 0.41
        ji = s["joints2d"].round().long().clamp(0, S - 1)
        under = occ[ji[:, 1], ji[:, 0]] & s["joints_in_crop"]
        assert torch.equal(s["joints_occluded"], under | ~s["joints_in_crop"])
        # visibility
        assert s["kernel_visible"].sum() > 50
        assert not (s["kernel_visible_unocc"] & ~s["kernel_visible"]).any()
        assert s["kernel_bin"].min() >= 0 and s["kernel_bin"].max() < 3


def test_upright_facing_camera_orient_convention(renderer):
    """Global orientation is in the camera frame: the body's up axis maps to the camera's -y
    (roughly, elevation <= 30 deg), so R[1, 1] < 0 for an upright body."""
    ds = _ds(renderer, elevation_deg=(0.0, 0.0))
    from engines.rotations import axis_angle_to_matrix

    for i in range(3):
        R = axis_angle_to_matrix(ds[i]["global_orient"][None].double())[0]
        assert R[1, 1] < -0.7


def test_truncated_crops_cut_the_body(renderer):
    ds = _ds(renderer, truncation_prob=1.0, truncation=(0.2, 0.3), occlusion_prob=0.0)
    outside = [(~ds[i]["joints_in_crop"]).any().item() for i in range(6)]
    assert sum(outside) >= 3


def test_split_by_take_background_and_texture(renderer):
    d = default_mocap_dir()
    tr, va, ev = (split_takes(d, s) for s in ("train", "val", "eval"))
    names = [{p.name for p in x} for x in (tr, va, ev)]
    assert not names[0] & names[1] and not names[0] & names[2] and not names[1] & names[2]
    assert names[1] == set(VAL_TAKES)
    assert all("holdout" in str(p) for p in ev) and len(ev) == 5
    assert len(tr) == 13
    a = _ds(renderer, "train")
    b = _ds(renderer, "val")
    assert a.bank_split == "train" and b.bank_split == "heldout"
    assert not set(a.backgrounds.names) & set(b.backgrounds.names)


def test_mirror_pose_is_an_involution_and_mirrors_joints(renderer):
    rng = np.random.default_rng(0)
    go = torch.tensor(rng.normal(0, 0.4, (2, 3)), dtype=torch.float32)
    bp = torch.tensor(rng.normal(0, 0.3, (2, 69)), dtype=torch.float32)
    tr = torch.tensor(rng.normal(0, 0.5, (2, 3)), dtype=torch.float32)
    m = mirror_pose(*mirror_pose(go, bp, tr))
    for x, y in zip(m, (go, bp, tr)):
        torch.testing.assert_close(x, y)
    be = torch.zeros(2, 10)
    j = renderer.body(go, bp, be, tr).joints
    jm = renderer.body(*mirror_pose(go, bp, tr)[:2], be, mirror_pose(go, bp, tr)[2]).joints
    flip = j[:, list(MIRROR_PERM)] * torch.tensor([-1.0, 1.0, 1.0])
    # exact up to the template's left/right asymmetry (a few mm)
    assert (jm - flip).norm(dim=-1).max() < 0.02


def test_real_takes_val_split(renderer):
    """Integration with engines.motion: the val split's retargeted CMU takes render upright
    bodies (head above the pelvis in the crop) inside the crop."""
    ds = SynthDataset(SynthConfig(crop_size=128, truncation_prob=0.0), "val", renderer=renderer)
    assert set(ds.takes.names) == set(VAL_TAKES)
    for i in range(3):
        s = ds[i]
        j2 = s["joints2d"]
        assert j2[15, 1] < j2[0, 1]  # head above pelvis
        assert s["joints_in_crop"].float().mean() > 0.9
        assert ds.takes.names[s["take"]] in VAL_TAKES
