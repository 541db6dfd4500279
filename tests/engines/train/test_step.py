"""Kernel targets of a training step: the true-pose render that pools features onto kernels."""

import pytest
import torch

from engines.body import BodyModel
from engines.render import pool_features, render
from engines.train.regression import RegressionWeights
from engines.train.step import feature_camera, step
from engines.train.trainer import collate

from ..evaluation._helpers import tiny_bundle
from .test_trainer import S, TinySet


@pytest.fixture(scope="module")
def setup():
    body = BodyModel.default()
    bundle = tiny_bundle(body)
    nbv = bundle.build_nbv(body)
    batch = collate([TinySet(2, seed=3)[i] for i in range(2)])
    return body, bundle, nbv, batch


def _run(setup, **kw):
    body, bundle, nbv, batch = setup
    with torch.no_grad():
        return step(bundle.net.eval(), body, nbv, bundle.bank, batch, RegressionWeights(),
                    update_bank=False, **kw)  # fmt: skip


def test_targets_are_the_kernels_whose_render_weights_pass_the_threshold(setup):
    body, _, nbv, batch = setup
    with torch.no_grad():
        centres, _ = nbv.pose(body, batch["global_orient"].float(), batch["body_pose"].float(),
                              batch["betas"].float(), batch["transl"].float())  # fmt: skip
        r = render(centres, feature_camera(batch["K"].float(), 4, S), M=10)
        _, wsum = pool_features(r, torch.zeros(2, 1, S // 4, S // 4))
    for th in (0.05, 0.3):
        assert _run(setup, pool_slots=10, pool_min_weight=th).n_visible == int((wsum > th).sum())


def test_all_slots_give_more_targets_than_the_front_slot(setup):
    front = _run(setup, pool_slots=1, pool_min_weight=1e-3).n_visible
    assert 0 < front < _run(setup, pool_slots=10, pool_min_weight=1e-3).n_visible


def test_target_subset_scores_fewer_but_updates_the_bank_with_all(setup):
    body, bundle, nbv, batch = setup
    kw = {"pool_min_weight": 1e-3}
    n = _run(setup, **kw).n_visible
    assert n > 20
    full = _run(setup, generator=torch.Generator().manual_seed(0), **kw)
    same = _run(setup, max_targets=n, generator=torch.Generator().manual_seed(0), **kw)
    assert same.terms["contrastive"] == pytest.approx(full.terms["contrastive"])
    sub = [_run(setup, max_targets=n // 3, generator=torch.Generator().manual_seed(s), **kw)
           for s in (0, 1)]  # fmt: skip
    assert sub[0].terms["contrastive"] != sub[1].terms["contrastive"]  # a random subset
    assert sub[0].n_visible == n
    seen = []
    for k in (0, n // 3):  # the bank learns every target's row either way
        bank = type(bundle.bank)(nbv.num_kernels, nbv.num_bins, bundle.bank.dim)
        step(bundle.net.eval(), body, nbv, bank, batch, RegressionWeights(), max_targets=k,
             generator=torch.Generator().manual_seed(0), **kw)  # fmt: skip
        seen.append(bank.seen.clone())
    assert torch.equal(seen[0], seen[1]) and int(seen[0].sum()) > n // 3


@pytest.mark.parametrize("kw", [{"pool_slots": 0}, {"pool_min_weight": -1.0}, {"max_targets": -1}])
def test_bad_pooling_settings_are_rejected(setup, kw):
    with pytest.raises(ValueError, match=next(iter(kw))):
        _run(setup, **kw)


def _clutter_written(setup, occluder, share):
    """FIFO rows one step writes, and the on-body occluder pixels' features."""
    body, bundle, nbv, batch = setup
    batch = {**batch, "occluder_mask": occluder}
    bank = type(bundle.bank)(nbv.num_kernels, nbv.num_bins, bundle.bank.dim)
    net = bundle.net.eval()
    with torch.no_grad():
        step(net, body, nbv, bank, batch, RegressionWeights(), clutter_per_image=10,
             occluder_clutter=share, generator=torch.Generator().manual_seed(0))  # fmt: skip
        from engines.featnet import normalize_images

        feats = torch.nn.functional.normalize(
            net(normalize_images(batch["image"]))["features"], dim=1
        )
    n = int(bank.clutter_ptr)
    return bank.clutter[:n], feats


def test_occluder_share_of_the_clutter_picks_comes_from_occluders_over_the_body(setup):
    body, _, nbv, batch = setup
    occ = torch.zeros(2, S, S, dtype=torch.bool)
    occ[:, S // 2 - 6 : S // 2 + 6, S // 2 - 6 : S // 2 + 6] = True  # over the body's middle
    with torch.no_grad():
        centres, _ = nbv.pose(body, batch["global_orient"].float(), batch["body_pose"].float(),
                              batch["betas"].float(), batch["transl"].float())  # fmt: skip
        mask = render(centres, feature_camera(batch["K"].float(), 4, S), M=10).mask
    on_body = occ[:, 2::4, 2::4] & mask  # [B, h, w], the step's downsampling
    assert int(on_body[0].sum()) >= 4 and int(on_body[1].sum()) >= 4

    def from_occluder(share):
        rows, feats = _clutter_written(setup, occ, share)
        assert rows.shape[0] == 20  # 10 picks per image either way
        hits = []
        for b in range(2):  # rows 10 b .. 10 b + 9 come from image b
            cand = feats[b].permute(1, 2, 0)[on_body[b]]  # [N, D]
            sim = rows[10 * b : 10 * b + 10] @ cand.T
            hits.append(sim.max(dim=1).values > 0.9999)
        return torch.cat(hits)

    half = from_occluder(0.5)
    n_on = [min(5, int(on_body[b].sum())) for b in range(2)]
    assert int(half[:10].sum()) >= n_on[0] and int(half[10:].sum()) >= n_on[1]
    assert int(half.sum()) < 20
    assert int(from_occluder(0.0).sum()) < int(half.sum())  # uniform picks rarely land there


def test_occluder_share_is_checked(setup):
    with pytest.raises(ValueError, match="occluder_clutter"):
        _run(setup, occluder_clutter=1.5)
