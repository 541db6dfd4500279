"""Re-estimating the feature bank from a frozen network (``engines.train.bank_refresh``)."""

import json

import pytest
import torch
import torch.nn.functional as F

from engines.body import BodyModel
from engines.featnet import normalize_images
from engines.model import load_model
from engines.train.bank_refresh import accumulate_rows, main, refreshed_bank
from engines.train.contrastive import kernel_top1
from engines.train.regression import RegressionWeights
from engines.train.step import kernel_targets, step
from engines.train.trainer import collate

from ..evaluation._helpers import tiny_bundle
from .test_trainer import TinySet


@pytest.fixture(scope="module")
def setup():
    body = BodyModel.default()
    bundle = tiny_bundle(body)
    nbv = bundle.build_nbv(body)
    samples = [TinySet(3, seed=5)[i] for i in range(3)]
    return body, bundle, nbv, samples


def test_rows_sum_the_training_targets_whatever_the_batching(setup):
    body, bundle, nbv, samples = setup
    whole = collate(samples)
    sums, counts = accumulate_rows(bundle.net, body, nbv, bundle.bank, [whole])
    with torch.no_grad():  # the same targets, and as many, as a training step scores
        so = step(bundle.net.eval(), body, nbv, bundle.bank, whole, RegressionWeights(),
                  update_bank=False)  # fmt: skip
    assert int(counts.sum()) == so.n_visible > 20
    split = accumulate_rows(bundle.net, body, nbv, bundle.bank,
                            [collate(samples[:1]), collate(samples[1:])])  # fmt: skip
    assert torch.equal(split[1], counts)
    torch.testing.assert_close(split[0], sums, atol=1e-5, rtol=0)
    assert (sums[counts == 0] == 0).all()


def test_refreshed_rows_are_the_mean_direction_and_the_bank_is_copied(setup):
    body, bundle, nbv, samples = setup
    bank = bundle.bank
    before = bank.rows.clone()
    batch = collate([samples[0], *samples])  # the first image's rows are seen twice
    sums, counts = accumulate_rows(bundle.net, body, nbv, bank, [batch])
    new = refreshed_bank(bank, sums, counts, min_count=2)
    assert torch.equal(bank.rows, before)  # the model's own bank is untouched
    keep = counts >= 2
    assert 0 < int(keep.sum()) < int((counts > 0).sum())
    torch.testing.assert_close(new.rows[keep], F.normalize(sums[keep].float(), dim=-1))
    assert torch.equal(new.rows[~keep], before[~keep])
    assert torch.equal(new.clutter, bank.clutter)
    # on the images it was estimated from, the refreshed bank classifies kernels better
    with torch.no_grad():
        feats = bundle.net.eval()(normalize_images(batch["image"]))["features"]
        t = kernel_targets(body, nbv, bank, batch, feats)
    one = refreshed_bank(bank, sums, counts, min_count=1)
    top = [kernel_top1(t.feats, t.kernels, b, nbv.adjacency) for b in (bank, one)]
    assert top[1] > top[0] + 0.2, top


def test_refresh_rejects_mismatched_inputs(setup):
    bank = setup[1].bank
    sums, counts = torch.zeros_like(bank.rows), torch.zeros(bank.rows.shape[0], dtype=torch.long)
    with pytest.raises(ValueError, match="sums must be"):
        refreshed_bank(bank, sums[:-1], counts)
    with pytest.raises(ValueError, match="min_count"):
        refreshed_bank(bank, sums, counts, min_count=0)


def test_cli_keeps_the_network_and_records_the_refresh(tmp_path):
    out = tmp_path / "m.safetensors"
    argv = ["--out", str(out), "--samples", "6", "--batch-size", "3", "--workers", "0",
            "--min-count", "1"]  # fmt: skip
    threads = torch.get_num_threads()
    try:
        assert main(argv) == 0
    finally:  # the CLI sets the process's intra-op threads (--threads, default 1)
        torch.set_num_threads(threads)
    old, new = load_model(), load_model(out)
    assert new.net.weights_hash() == old.net.weights_hash()
    changed = (new.bank.rows != old.bank.rows).any(-1)
    assert 100 < int(changed.sum()) < changed.numel()
    assert torch.equal(new.bank.clutter, old.bank.clutter)
    meta = json.loads(out.with_suffix(".json").read_text())["bank_refresh"]
    assert meta["samples"] == 6 and meta["rows_refreshed"] == int(changed.sum())
    for bad in (
        ["--samples", "0"],
        ["--workers", "-1"],
        ["--min-count", "0"],
        ["--samples", str(10**9)],
    ):  # more than the train split holds
        with pytest.raises(SystemExit):
            main([*argv, *bad])
        assert torch.get_num_threads() == threads  # rejected before the threads are set
