"""NeuralBodyVolume structure: kernels, adjacency, limbs, orientation bins."""

import math

import pytest
import torch

from engines.body import JOINT_NAMES, BodyModel
from engines.nbv import LIMB_DIRECTIONS, LIMB_NAMES, NBVConfig, NeuralBodyVolume

J = {n: i for i, n in enumerate(JOINT_NAMES)}


@pytest.fixture(scope="module")
def body():
    return BodyModel.default()


@pytest.fixture(scope="module")
def nbv(body):
    return NeuralBodyVolume(body)


def test_kernel_count_uniform_and_deterministic(body, nbv):
    assert nbv.num_kernels == 858
    assert len(set(nbv.kernel_ids.tolist())) == 858
    again = NeuralBodyVolume(body)
    assert torch.equal(again.kernel_ids, nbv.kernel_ids)
    assert torch.equal(again.adjacency, nbv.adjacency)
    d = torch.cdist(nbv.rest_centres, nbv.rest_centres)
    d.fill_diagonal_(float("inf"))
    nn = d.min(1).values
    assert nn.max() < 2.0 * nn.mean()  # roughly uniform spacing
    small = NeuralBodyVolume(body, NBVConfig(num_kernels=200))
    assert small.num_kernels == 200


def test_adjacency(nbv):
    A = nbv.adjacency
    assert A.shape == (858, 858) and A.dtype == torch.bool
    assert torch.equal(A, A.T)
    assert not A.diagonal().any()
    deg = A.sum(1)
    assert deg.min() >= 1 and 4 < deg.float().mean() < 8  # a triangulated surface: ~6
    i, j = nbv.neighbour_index
    assert A[i, j].all() and len(i) == int(A.sum())
    # Neighbours are close: within a few kernel spacings on the rest mesh.
    dist = (nbv.rest_centres[i] - nbv.rest_centres[j]).norm(dim=-1)
    assert dist.max() < 0.25
    # Every vertex belongs to a kernel region; each kernel owns its own vertex.
    assert nbv.vertex_region.min() >= 0
    assert torch.equal(nbv.vertex_region[nbv.kernel_ids], torch.arange(858))


def test_limb_map(body, nbv):
    c = nbv.rest_centres
    limb = nbv.kernel_limb
    rest = body.rest_joints()[0]
    assert set(limb.tolist()) == set(range(len(LIMB_NAMES)))
    left = torch.isin(limb, torch.tensor([1, 2, 5, 6]))
    right = torch.isin(limb, torch.tensor([3, 4, 7, 8]))
    assert (c[left, 0] > 0).all() and (c[right, 0] < 0).all()
    hand_l = c[:, 0] > rest[J["left_wrist"], 0] + 0.02
    assert hand_l.sum() > 5 and (limb[hand_l] == LIMB_NAMES.index("left_lower_arm")).all()
    hand_r = c[:, 0] < rest[J["right_wrist"], 0] - 0.02
    assert (limb[hand_r] == LIMB_NAMES.index("right_lower_arm")).all()
    head = c[:, 1] > rest[J["head"], 1]
    assert head.sum() > 10 and (limb[head] == 0).all()
    feet = c[:, 1] < rest[J["left_ankle"], 1] - 0.02
    assert set(limb[feet].tolist()) <= {6, 8}


def test_pose_matches_full_skinning(body, nbv):
    g = torch.Generator().manual_seed(0)
    go, bp = 0.3 * torch.randn(2, 3, generator=g), 0.3 * torch.randn(2, 69, generator=g)
    betas, tr = torch.randn(2, 10, generator=g), torch.randn(2, 3, generator=g)
    centres, joints = nbv.pose(body, go, bp, betas, tr)
    full = body(go, bp, betas, tr)
    assert centres.shape == (2, 858, 3)
    torch.testing.assert_close(centres, full.vertices[:, nbv.kernel_ids])
    torch.testing.assert_close(joints, full.joints)


def _joints_with_left_upper_arm(direction):
    """Rest-like joints [1, 24, 3] where only the left upper arm points along ``direction``."""
    j = torch.zeros(1, 24, 3)
    j[0, :, 1] = -torch.arange(24.0)  # other limbs point along +y (distinct joints)
    d = torch.tensor(direction, dtype=torch.float32)
    j[0, J["left_elbow"]] = j[0, J["left_shoulder"]] + 0.3 * d / d.norm()
    return j


@pytest.mark.parametrize(
    "direction, label", [((1, 0, 0), 0), ((0, 0, 1), 1), ((0, 0, -1), 2), ((1, 0, 0.2), 0),
                         ((0.5, 0, 1), 1), ((1, 0, -0.5), 2)],
)  # fmt: skip
def test_code3_bins(body, nbv, direction, label):
    j = _joints_with_left_upper_arm(direction)
    L = LIMB_NAMES.index("left_upper_arm")
    assert nbv.limb_labels(j)[0, L] == label
    w = nbv.limb_weights(j)
    torch.testing.assert_close(w.sum(-1), torch.ones(1, 9))
    assert w[0, L].argmax() == label
    z = torch.tensor(direction[2] / math.hypot(*direction))
    if abs(abs(z) - 0.3) > 0.25:  # far from the thresholds: nearly one-hot
        assert w[0, L, label] > 0.9
    kw = nbv.orientation_weights(j)
    kl = nbv.orientation_labels(j)
    assert kw.shape == (1, 858, 3) and kl.shape == (1, 858) and kl.dtype == torch.long
    sel = nbv.kernel_limb == L
    assert (kl[0, sel] == label).all()
    torch.testing.assert_close(kw[0, sel], w[0, L].expand(int(sel.sum()), 3))


def test_code3_soft_weights_formula(nbv):
    z = torch.tensor(0.0)
    j = _joints_with_left_upper_arm((1, 0, 0))
    w = nbv.limb_weights(j)[0, 1]
    s = torch.sigmoid
    expect = torch.stack([s(10 * (z + 0.3)) + s(10 * (0.3 - z)) - 1, s(10 * (z - 0.3)),
                          s(10 * (-z - 0.3))])  # fmt: skip
    torch.testing.assert_close(w, expect)


@pytest.mark.parametrize("direction, label", [((0, 1, 0), 0), ((0, 0, 1), 1), ((0, -1, 0), 2),
                                              ((0, 0, -1), 3), ((0.5, -1, 0.3), 2)])  # fmt: skip
def test_paper_bins(body, direction, label):
    nbv = NeuralBodyVolume(body, NBVConfig(orientation="paper", num_bins=4, kappa=8.0))
    j = _joints_with_left_upper_arm(direction)
    assert nbv.limb_labels(j)[0, 1] == label
    w = nbv.limb_weights(j)[0, 1]
    assert w.argmax() == label
    if math.hypot(direction[0], 0) == 0:
        assert w[label] > 0.99
    assert nbv.orientation_weights(j).shape == (1, 858, 4)
    # Along the camera x axis the projection vanishes: weights become uniform.
    wx = nbv.limb_weights(_joints_with_left_upper_arm((1, 0, 0)))[0, 1]
    torch.testing.assert_close(wx, torch.full((4,), 0.25))


def test_limb_directions_follow_conventions(body, nbv):
    rest = body.rest_joints()
    d = nbv.limb_directions(rest)[0]
    assert d[0, 1] > 0.95  # torso: mid-hip -> neck, up
    assert d[1, 0] > 0.95 and d[3, 0] < -0.95  # upper arms along +-x in the T-pose
    assert d[5, 1] < -0.95 and d[8, 1] < -0.95  # legs down
    assert len(LIMB_DIRECTIONS) == 9


def test_config_and_input_errors(body, nbv):
    with pytest.raises(ValueError, match="unknown"):
        NBVConfig.from_dict({"num_kernels": 100, "bins": 3})
    with pytest.raises(ValueError, match="orientation"):
        NBVConfig(orientation="five")
    with pytest.raises(ValueError, match="joints"):
        nbv.orientation_weights(torch.zeros(2, 23, 3))
    with pytest.raises(ValueError, match="num_kernels"):
        NeuralBodyVolume(body, NBVConfig(num_kernels=10**6))
