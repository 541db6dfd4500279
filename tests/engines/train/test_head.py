"""Regression-head fine-tune on the frozen trunk: pooling, widening and folding, the cache, the
fit and the CLI on the real synthetic data engine and the shipped bundle."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from engines.body import BodyModel
from engines.featnet import FeatNetConfig, FeatureNet, normalize_images
from engines.model import load_model
from engines.train.head import (
    HeadFitConfig,
    WideHead,
    average_heads,
    blend_heads,
    build_cache,
    cache_key,
    fit_head,
    head_parameters,
    load_cache,
    main,
    trunk_hash,
)
from tests.engines.train.test_trainer import S, TinySet

SMALL = FeatNetConfig(input_size=S, width=8, feature_dim=16, head_channels=16, smpl_channels=4,
                      mlp_hidden=16, pose_mlp=32)  # fmt: skip


def _net(seed=0, **kw):
    torch.manual_seed(seed)
    net = FeatureNet(FeatNetConfig.from_dict({**SMALL.to_dict(), **kw})).eval()
    with torch.no_grad():  # non-trivial heads (the final layers start near zero)
        for p in head_parameters(net):
            p.add_(0.1 * torch.randn_like(p))
    return net


def _images(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return normalize_images(torch.randint(0, 255, (n, S, S, 3), generator=g, dtype=torch.uint8))


def test_smpl_proj_after_pooling_equals_pooling_its_map():
    net = _net()
    x = _images(2)
    with torch.no_grad():
        _, logits, pooled = net.pool(x)
        c1 = net.stages[0](net.stem(x))
        c2 = net.stages[1](c1)
        c3 = net.stages[2](c2)
        y = net.up1(net.up2(net.up3(net.stages[3](c3), c3), c2), c1)
        attn = torch.softmax(logits[:, 1:].flatten(2), dim=-1)
        smpl = torch.bmm(attn, net.smpl_proj(y).flatten(2).transpose(1, 2)).flatten(1)
        out = net.regress(pooled)
    torch.testing.assert_close(out["betas"], net.shape_mlp(smpl), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out["cam"], net.cam_mlp(smpl), atol=1e-5, rtol=1e-4)


def test_regress_checks_its_input():
    with pytest.raises(ValueError, match="pooled must be"):
        _net().regress(torch.zeros(2, 24, 8))


@pytest.mark.parametrize("pose_mlp", [32, 0])
def test_wide_head_starts_unchanged_and_folds_exactly(pose_mlp):
    net = _net(pose_mlp=pose_mlp)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        pooled = net.pool(_images(3))[2]
        flat = pooled.flatten(1)
        head = WideHead(net, 24, flat.mean(0), flat.std(0) + 0.1)
        for k, v in head(pooled).items():
            torch.testing.assert_close(v, net.regress(pooled)[k])
        head.hidden.weight.normal_()
        head.out.weight.normal_(std=0.1)
        head.out.bias.normal_(std=0.1)
        want = head(pooled)
        folded = head.fold()
        got = folded(_images(3))
    assert folded.config.pose_mlp == pose_mlp + 24
    for k in ("pose6d", "betas", "cam"):
        torch.testing.assert_close(got[k], want[k], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(want["pose6d"], net.regress(pooled)["pose6d"])
    for k, v in net.state_dict().items():  # the caller's network is never changed
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="std must be > 0"):
        WideHead(net, 4, flat.mean(0), torch.zeros_like(flat[0]))
    with pytest.raises(ValueError, match="mean and std"):
        WideHead(net, 4, flat.mean(0)[:5], flat.std(0)[:5])


def test_cache_round_trip_reuse_and_rebuild(tmp_path):
    net, ds = _net(), TinySet(10, 0)
    idx = np.array([3, 1, 4, 1, 5, 9])
    key = cache_key(net, {"a": 1}, "train", idx)
    prefix = build_cache(net, ds, idx, tmp_path / "c1", key, batch_size=4, progress=False)
    y, t = load_cache([prefix])
    assert y.shape == (6, 24, 16) and t["joints3d"].shape == (6, 24, 3)
    with torch.no_grad():
        want = net.pool(normalize_images(torch.as_tensor(ds[9]["image"])[None]))[2][0]
    torch.testing.assert_close(y[5], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(t["joints3d"][0], torch.as_tensor(ds[3]["joints3d"]).float())

    class Exploding(TinySet):
        def __getitem__(self, i):
            raise AssertionError("a cache whose key matches must not be rebuilt")

    build_cache(net, Exploding(10, 0), idx, tmp_path / "c1", key, progress=False)
    other = cache_key(_net(seed=1), {"a": 1}, "train", idx)  # other weights: other key
    # another head on the same trunk (a fine-tune, a blend, a wider MLP): the same pooled inputs
    headed = _net(pose_mlp=48)
    trunk = {k: v for k, v in net.state_dict().items() if not k.startswith(
        ("pose_", "smpl_proj", "shape_mlp", "cam_mlp"))}  # fmt: skip
    headed.load_state_dict(trunk, strict=False)
    assert cache_key(headed, {"a": 1}, "train", idx) == key
    assert trunk_hash(headed) == trunk_hash(net) and headed.weights_hash() != net.weights_hash()
    with torch.no_grad():
        next(headed.stem.parameters()).add_(1e-3)
    assert cache_key(headed, {"a": 1}, "train", idx) != key  # a trunk weight changed
    assert other != key and cache_key(net, {"a": 2}, "train", idx) != key
    assert cache_key(net, {"a": 1}, "train", idx[:5]) != key
    with pytest.raises(AssertionError, match="must not be rebuilt"):
        build_cache(net, Exploding(10, 0), idx, tmp_path / "c1", other, progress=False)
    with pytest.raises(ValueError, match="no cache chunks"):
        load_cache([])


def test_fit_head_learns_and_keeps_the_trunk(tmp_path):
    net, body = _net(), BodyModel.default()
    ds = TinySet(48, 0)
    prefix = build_cache(net, ds, np.arange(48), tmp_path / "tr", "k", progress=False)
    data = load_cache([prefix])
    cfg = HeadFitConfig(extra_hidden=64, epochs=15, lr=3e-3, batch_size=16)
    fitted, history = fit_head(net, body, data, data, cfg, progress=False)  # val = train
    again, same = fit_head(net, body, data, data, cfg, progress=False)
    assert same == history  # seeded: the new units' init, the batches and the dropout
    assert torch.equal(again.pose_mlp[0].weight, fitted.pose_mlp[0].weight)
    _, feat_hist = fit_head(net, body, data, data, dataclasses.replace(cfg, standardize="feature"),
                            progress=False)  # fmt: skip
    assert feat_hist[0] == history[0] and feat_hist[-1] != history[-1]
    _, drop_hist = fit_head(net, body, data, data, dataclasses.replace(cfg, part_dropout=0.2),
                            progress=False)  # fmt: skip
    assert drop_hist[0] == history[0] and drop_hist[-1] != history[-1]
    assert min(r["pa_mpjpe"] for r in drop_hist[1:]) < 0.9 * history[0]["pa_mpjpe"]
    assert [r["epoch"] for r in history] == list(range(16))
    assert min(r["pa_mpjpe"] for r in history[1:]) < 0.8 * history[0]["pa_mpjpe"]
    assert fitted.config.pose_mlp == 32 + 64
    x = _images(2, seed=3)
    with torch.no_grad():
        a, b = net(x), fitted(x)
    assert torch.equal(a["features"], b["features"])
    assert torch.equal(a["part_logits"], b["part_logits"])
    with pytest.raises(ValueError, match="fewer than one batch"):
        fit_head(net, body, (data[0][:8], {k: v[:8] for k, v in data[1].items()}), data, cfg)
    with pytest.raises(ValueError, match="epochs must be > 0"):
        HeadFitConfig(epochs=0)
    with pytest.raises(ValueError, match="part_dropout must be"):
        HeadFitConfig(part_dropout=1.0)
    with pytest.raises(ValueError, match="standardize must be"):
        HeadFitConfig(standardize="minmax")


@pytest.mark.parametrize("start_mlp", [32, 0])
def test_blend_mixes_the_pose_outputs_and_keeps_the_tuned_shape_and_camera(start_mlp):
    start = _net(pose_mlp=start_mlp)
    tuned = _net(pose_mlp=48)  # a head fine-tune of start: same trunk, other heads
    trunk = {k: v for k, v in start.state_dict().items() if not k.startswith(
        ("pose_", "smpl_proj", "shape_mlp", "cam_mlp"))}  # fmt: skip
    tuned.load_state_dict(trunk, strict=False)
    before = {k: v.clone() for k, v in tuned.state_dict().items()}
    pooled = torch.randn(3, 24, SMALL.head_channels)
    with torch.no_grad():
        a, t = start.regress(pooled), tuned.regress(pooled)
        for alpha in (0.0, 0.3, 1.0):
            net = blend_heads(start, tuned, alpha)
            assert net.config.pose_mlp == start_mlp + 48
            b = net.regress(pooled)
            want = alpha * t["pose6d"] + (1 - alpha) * a["pose6d"]
            torch.testing.assert_close(b["pose6d"], want, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(b["betas"], t["betas"])
            torch.testing.assert_close(b["cam"], t["cam"])
    assert all(torch.equal(v, before[k]) for k, v in tuned.state_dict().items())
    with pytest.raises(ValueError, match="alpha must be"):
        blend_heads(start, tuned, 1.5)
    with pytest.raises(ValueError, match="same trunk"):
        blend_heads(_net(seed=1), tuned, 0.5)


def test_average_heads_is_the_mean_pose_output():
    start = _net()
    trunk = {k: v for k, v in start.state_dict().items() if not k.startswith(
        ("pose_", "smpl_proj", "shape_mlp", "cam_mlp"))}  # fmt: skip
    nets = []
    for seed, width in ((1, 48), (2, 0), (3, 16)):  # fits of one trunk, other heads
        n = _net(seed=seed, pose_mlp=width)
        n.load_state_dict(trunk, strict=False)
        nets.append(n)
    pooled = torch.randn(3, 24, SMALL.head_channels)
    with torch.no_grad():
        outs = [n.regress(pooled) for n in nets]
        avg = average_heads(nets)
        got = avg.regress(pooled)
    assert avg.config.pose_mlp == 48 + 0 + 16
    want = sum(o["pose6d"] for o in outs) / 3
    torch.testing.assert_close(got["pose6d"], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got["betas"], outs[-1]["betas"])
    torch.testing.assert_close(got["cam"], outs[-1]["cam"])
    assert average_heads(nets[:1]) is nets[0]
    with pytest.raises(ValueError, match="at least one"):
        average_heads([])


@pytest.mark.slow
def test_cli_writes_a_bundle_with_the_same_features_and_bank(tmp_path):
    out = tmp_path / "m.safetensors"
    argv = ["--out", str(out), "--cache-dir", str(tmp_path / "cache"), "--chunks", "1",
            "--chunk-size", "64", "--val-samples", "32", "--workers", "0", "--epochs", "1",
            "--batch-size", "16", "--extra-hidden", "32", "--occluded-chunks", "1"]  # fmt: skip
    threads = torch.get_num_threads()
    blended = tmp_path / "b.safetensors"
    try:
        assert main(argv) == 0
        assert main([*argv, "--out", str(blended), "--blend", "0.5"]) == 0  # cached renders
        pair = tmp_path / "pair.safetensors"
        assert main([*argv, "--out", str(pair), "--seeds", "0,1"]) == 0
    finally:  # the CLI sets the process's intra-op threads (--threads, default 1)
        torch.set_num_threads(threads)
    old, new = load_model(), load_model(out)
    b = load_model(blended)
    assert b.net.config.pose_mlp == 2 * old.net.config.pose_mlp + 32
    fit = json.loads(blended.with_suffix(".json").read_text())["head_fit"]
    assert fit["blend"] == 0.5 and fit["blend_val"]["pa_mpjpe"] > 0
    assert new.net.config.pose_mlp == old.net.config.pose_mlp + 32
    two = load_model(pair)  # two fits side by side, each the old units plus 32 new ones
    assert two.net.config.pose_mlp == 2 * (old.net.config.pose_mlp + 32)
    fit2 = json.loads(pair.with_suffix(".json").read_text())["head_fit"]
    assert fit2["seeds"] == [0, 1] and len(fit2["seed_histories"]) == 1
    assert fit2["seed_histories"][0] != fit2["history"]  # another seed, another fit
    assert fit2["history"] == json.loads(out.with_suffix(".json").read_text())["head_fit"][
        "history"]  # fmt: skip
    assert fit2["blend_val"]["pa_mpjpe"] > 0
    assert torch.equal(new.bank.kernel_table(), old.kernel_table())
    x = _images(1)
    x = torch.nn.functional.interpolate(x, size=192)
    with torch.no_grad():
        assert torch.equal(new.net(x)["features"], old.net(x)["features"])
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["head_fit"]["samples"] == 128 and len(meta["head_fit"]["history"]) == 2
    assert meta["head_fit"]["occluded_chunks"] == 1
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.json")) == [
        "occluded1.json",
        "train1.json",
        "val.json",
    ]
    keys = {p.name: json.loads(p.read_text())["key"] for p in (tmp_path / "cache").glob("*.json")}
    assert keys["occluded1.json"] != keys["train1.json"]
    for bad in (["--chunks", "0"], ["--occluded-chunks", "-1"],
                ["--occluded-coverage", "0.6", "0.2"], ["--blend", "0"], ["--seeds", "0,0"],
                ["--seeds", "a"]):  # fmt: skip
        with pytest.raises(SystemExit):
            main([*argv, *bad])  # the small run's settings: without the check it ends fast
        assert torch.get_num_threads() == threads  # rejected before the threads are set
