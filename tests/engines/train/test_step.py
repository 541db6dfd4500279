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


@pytest.mark.parametrize("kw", [{"pool_slots": 0}, {"pool_min_weight": -1.0}])
def test_bad_pooling_settings_are_rejected(setup, kw):
    with pytest.raises(ValueError, match="pool_"):
        _run(setup, **kw)
