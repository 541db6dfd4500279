import math

import pytest
import torch
import torch.nn.functional as F

from engines.train.contrastive import (
    BankConfig,
    FeatureBank,
    background_push,
    info_nce,
    kernel_top1,
    neighbour_row_mask,
    spherical_kmeans,
)


def _ring_adjacency(k):
    adj = torch.zeros(k, k, dtype=torch.bool)
    i = torch.arange(k)
    adj[i, (i + 1) % k] = True
    adj[(i + 1) % k, i] = True
    return adj


def test_bank_first_update_sets_row_then_ema():
    bank = FeatureBank(4, 3, 8, BankConfig(momentum=0.9, n_clutter=16))
    f1 = F.normalize(torch.randn(1, 8), dim=-1)
    row = bank.row_index(torch.tensor([2]), torch.tensor([1]))
    assert row.item() == 1 * 4 + 2
    bank.update(f1, row)
    assert torch.allclose(bank.rows[row], f1, atol=1e-6)
    f2 = F.normalize(torch.randn(1, 8), dim=-1)
    bank.update(f2, row)
    expected = F.normalize(0.9 * f1 + 0.1 * f2, dim=-1)
    assert torch.allclose(bank.rows[row], expected, atol=1e-6)
    # untouched rows stay unit and unchanged
    assert torch.allclose(bank.rows.norm(dim=-1), torch.ones(12), atol=1e-5)


def test_duplicate_rows_in_batch_are_averaged():
    bank = FeatureBank(2, 1, 4, BankConfig(n_clutter=4))
    feats = torch.eye(4)[:2]
    bank.update(feats, torch.tensor([0, 0]))
    assert torch.allclose(bank.rows[0], F.normalize(feats.sum(0), dim=-1), atol=1e-6)


def test_clutter_fifo_wraps():
    bank = FeatureBank(2, 1, 4, BankConfig(n_clutter=5))
    a = F.normalize(torch.randn(4, 4), dim=-1)
    b = F.normalize(torch.randn(3, 4), dim=-1)
    bank.push_clutter(a)
    bank.push_clutter(b)
    # rows 4, 0, 1 were written by b (pointer was at 4)
    assert torch.allclose(bank.clutter[4], b[0], atol=1e-6)
    assert torch.allclose(bank.clutter[0], b[1], atol=1e-6)
    assert torch.allclose(bank.clutter[1], b[2], atol=1e-6)
    assert torch.allclose(bank.clutter[2], a[2], atol=1e-6)
    assert bank.clutter_ptr.item() == 2


def test_clutter_centres_find_the_clusters_of_the_fifo():
    # three tight clusters around orthogonal directions: k-means recovers them, deterministically
    g = torch.Generator().manual_seed(0)
    axes = torch.eye(6)[:3]
    pts = F.normalize(
        axes.repeat_interleave(20, 0) + 0.05 * torch.randn(60, 6, generator=g), dim=-1
    )
    bank = FeatureBank(2, 1, 6, BankConfig(n_clutter=60))
    bank.push_clutter(pts)
    c = bank.clutter_centres(3)
    assert c.shape == (3, 6)
    assert torch.allclose(c.norm(dim=-1), torch.ones(3), atol=1e-5)
    best = (c @ axes.T).max(dim=0).values  # every axis has a centre next to it
    assert (best > 0.99).all()
    assert torch.equal(c, bank.clutter_centres(3))
    # one component is the mean direction the likelihood has always used
    assert torch.allclose(bank.clutter_centres(1)[0], bank.clutter_direction())
    with pytest.raises(ValueError):
        bank.clutter_centres(0)
    with pytest.raises(ValueError):
        spherical_kmeans(pts, 61)


def test_neighbour_mask_covers_every_bin_but_not_self():
    adj = _ring_adjacency(5)
    mask = neighbour_row_mask(torch.tensor([0]), adj, n_bins=3)
    assert mask.shape == (1, 15)
    masked = set(torch.nonzero(mask[0]).flatten().tolist())
    assert masked == {1, 4, 6, 9, 11, 14}


def test_masked_neighbours_do_not_change_loss():
    torch.manual_seed(0)
    k, o, d = 6, 3, 16
    adj = _ring_adjacency(k)
    bank = FeatureBank(k, o, d, BankConfig(n_clutter=8))
    feats = F.normalize(torch.randn(3, d), dim=-1)
    kernels = torch.tensor([0, 2, 3])
    rows = bank.row_index(kernels, torch.tensor([0, 1, 2]))
    before = info_nce(feats, rows, kernels, bank, adj)
    ref_0 = info_nce(feats[:1], rows[:1], kernels[:1], bank, adj)
    # kernel 1 is a 1-ring neighbour of kernel 0: making its rows equal to the query must not
    # change the loss of kernel 0 (masked), while a non-neighbour row would.
    bank.rows[1] = feats[0]
    bank.rows[1 + k] = feats[0]
    after_0 = info_nce(feats[:1], rows[:1], kernels[:1], bank, adj)
    assert torch.allclose(after_0, ref_0)
    bank.rows[3] = feats[0]  # kernel 3 is not adjacent to 0: a hard negative
    assert info_nce(feats[:1], rows[:1], kernels[:1], bank, adj) > ref_0
    assert torch.isfinite(before)


def test_same_kernel_other_bin_is_a_negative():
    k, o, d = 4, 3, 8
    adj = _ring_adjacency(k)
    bank = FeatureBank(k, o, d, BankConfig(n_clutter=4))
    f = F.normalize(torch.randn(1, d), dim=-1)
    rows = bank.row_index(torch.tensor([0]), torch.tensor([0]))
    base = info_nce(f, rows, torch.tensor([0]), bank, adj)
    bank.rows[k + 0] = f[0]  # kernel 0, bin 1 equal to the query: a strong negative
    assert info_nce(f, rows, torch.tensor([0]), bank, adj) > base


def test_clutter_weight_is_log_offset():
    k, o, d = 3, 1, 4
    adj = torch.zeros(k, k, dtype=torch.bool)
    bank = FeatureBank(k, o, d, BankConfig(n_clutter=2, temperature=1.0, clutter_weight=0.005))
    f = torch.tensor([[1.0, 0, 0, 0]])
    bank.rows[:] = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]])
    bank.clutter[:] = torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]])
    loss = info_nce(f, torch.tensor([0]), torch.tensor([0]), bank, adj)
    logits = torch.tensor([1.0, 0.0, 0.0, 1.0 + math.log(0.005), 0.0 + math.log(0.005)])
    assert torch.allclose(loss, -torch.log_softmax(logits, 0)[0], atol=1e-6)


def test_overfitting_features_separates_kernels():
    torch.manual_seed(0)
    k, o, d = 12, 3, 16
    adj = _ring_adjacency(k)
    bank = FeatureBank(k, o, d, BankConfig(n_clutter=32))
    raw = torch.randn(k * o, d, requires_grad=True)
    opt = torch.optim.Adam([raw], lr=0.05)
    kernels = torch.arange(k).repeat(o)
    bins = torch.arange(o).repeat_interleave(k)
    rows = bank.row_index(kernels, bins)
    losses = []
    for _ in range(150):
        feats = F.normalize(raw, dim=-1)
        loss = info_nce(feats, rows, kernels, bank, adj)
        opt.zero_grad()
        loss.backward()
        opt.step()
        bank.update(feats.detach(), rows)
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    assert kernel_top1(F.normalize(raw, dim=-1).detach(), kernels, bank, adj) > 0.95


def test_background_push_and_bad_shapes():
    bank = FeatureBank(2, 1, 4, BankConfig(n_clutter=2))
    bank.rows[:] = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    assert background_push(torch.tensor([[1.0, 0, 0, 0]]), bank).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="feats"):
        bank.update(torch.randn(3), torch.tensor([0]))
    with pytest.raises(ValueError, match="bg_feats"):
        background_push(torch.randn(4), bank)


def test_kernel_table_layout():
    bank = FeatureBank(3, 2, 4, BankConfig(n_clutter=2))
    table = bank.kernel_table()
    assert table.shape == (3, 8)
    assert torch.equal(table[1, 4:], bank.rows[3 + 1])
    assert torch.equal(table[2, :4], bank.rows[2])
