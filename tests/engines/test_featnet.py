from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from engines.featnet import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OUTPUT_NAMES,
    FeatNetConfig,
    FeatureNet,
    export_program,
    normalize_images,
)
from engines.rotations import axis_angle_to_matrix, rot6d_to_matrix
from tests.engines.backends._models import SMALL, randomized


@pytest.fixture(scope="module")
def model() -> FeatureNet:
    return randomized(SMALL)


def test_output_names_and_shapes(model: FeatureNet) -> None:
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    assert tuple(out) == OUTPUT_NAMES
    assert out["features"].shape == (2, 16, 16, 16)
    assert out["part_logits"].shape == (2, 25, 16, 16)
    assert out["pose6d"].shape == (2, 24, 6)
    assert out["betas"].shape == (2, 10)
    assert out["cam"].shape == (2, 3)
    assert all(v.dtype == torch.float32 for v in out.values())


def test_forward_checks_input_shape(model: FeatureNet) -> None:
    with pytest.raises(ValueError, match=r"x must be \[B, 3, 64, 64\]"):
        model(torch.zeros(1, 3, 96, 96))
    with pytest.raises(ValueError, match="x must be"):
        model(torch.zeros(3, 64, 64))


def test_default_config_shapes() -> None:
    cfg = FeatNetConfig()
    net = FeatureNet(cfg).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, cfg.input_size, cfg.input_size))
    h = cfg.input_size // 4
    assert cfg.feature_size == h
    assert out["features"].shape == (1, cfg.feature_dim, h, h)


def test_features_unit_length(model: FeatureNet) -> None:
    with torch.no_grad():
        f = model(torch.randn(3, 3, 64, 64))["features"]
    norms = f.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def test_initial_regression_is_sensible() -> None:
    net = FeatureNet(FeatNetConfig(input_size=64, width=8)).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 64, 64))
    R = rot6d_to_matrix(out["pose6d"])  # [B, 24, 3, 3]
    upright = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0]))
    torch.testing.assert_close(R[:, 0], upright.expand(2, 3, 3), atol=0.05, rtol=0)
    torch.testing.assert_close(R[:, 1:], torch.eye(3).expand(2, 23, 3, 3), atol=0.05, rtol=0)
    assert torch.allclose(out["cam"][:, 0], torch.full((2,), 0.9), atol=0.05)
    assert out["betas"].abs().max() < 0.05


def test_attention_pooling_depends_on_image(model: FeatureNet) -> None:
    with torch.no_grad():
        a = model(torch.randn(1, 3, 64, 64))
        b = model(torch.randn(1, 3, 64, 64))
    assert (a["pose6d"] - b["pose6d"]).abs().max() > 1e-4
    assert (a["features"] - b["features"]).abs().max() > 1e-2


def test_all_parameters_get_gradients() -> None:
    net = randomized(SMALL, seed=3).train()
    out = net(torch.randn(2, 3, 64, 64))
    loss = sum((v * torch.randn_like(v)).sum() for v in out.values())
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_config_rejects_unknown_and_invalid() -> None:
    with pytest.raises(ValueError, match="unknown FeatNetConfig keys"):
        FeatNetConfig.from_dict({"input_size": 192, "depth": 50})
    with pytest.raises(ValueError, match="input_size"):
        FeatNetConfig(input_size=100)
    with pytest.raises(ValueError, match="blocks"):
        FeatNetConfig(blocks=(1, 1, 1))
    cfg = FeatNetConfig(input_size=224, width=24, blocks=(2, 1, 1, 1))
    assert FeatNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_normalize_images() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
    x = normalize_images(img)
    assert x.shape == (1, 3, 8, 8) and x.dtype == torch.float32
    expected = (img[2, 5, 1] / 255.0 - IMAGENET_MEAN[1]) / IMAGENET_STD[1]
    assert x[0, 1, 2, 5].item() == pytest.approx(expected, abs=1e-5)
    batch = normalize_images(np.stack([img, img]))
    torch.testing.assert_close(batch[1], x[0])
    with pytest.raises(ValueError, match="uint8"):
        normalize_images(img.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[B, H, W, 3\]"):
        normalize_images(img[..., :2])


def test_checkpoint_roundtrip(tmp_path, model: FeatureNet) -> None:
    path = model.save_checkpoint(tmp_path / "ckpt" / "featnet.safetensors", {"run": "test"})
    assert path.is_file() and path.with_suffix(".json").is_file()
    loaded = FeatureNet.from_checkpoint(path)
    assert loaded.config == model.config
    assert loaded.checkpoint_metadata == {"run": "test"}
    assert loaded.weights_hash() == model.weights_hash()
    assert FeatureNet.read_checkpoint_metadata(path)["weights_hash"] == model.weights_hash()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), loaded(x)
    for k in OUTPUT_NAMES:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0)


def test_checkpoint_errors(tmp_path, model: FeatureNet) -> None:
    with pytest.raises(FileNotFoundError):
        FeatureNet.from_checkpoint(tmp_path / "missing.safetensors")
    path = model.save_checkpoint(tmp_path / "m.safetensors")
    meta = json.loads(path.with_suffix(".json").read_text())
    meta["config"]["bogus"] = 1
    path.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="unknown FeatNetConfig keys"):
        FeatureNet.from_checkpoint(path)


def test_weights_hash_tracks_weights_and_buffers(model: FeatureNet) -> None:
    other = randomized(SMALL)
    assert other.weights_hash() == model.weights_hash()
    with torch.no_grad():
        other.part_head.bias[3] += 1e-6
    assert other.weights_hash() != model.weights_hash()
    other = randomized(SMALL)
    with torch.no_grad():
        other.stem[0][1].running_var[0] += 1e-3  # a buffer, not a parameter
    assert other.weights_hash() != model.weights_hash()


def test_torch_export_dynamic_batch(model: FeatureNet) -> None:
    # a batch-1 example: export_program must not let torch.export specialise the batch to 1
    program = export_program(model, max_batch=4, example=torch.zeros(1, 3, 64, 64))
    run = program.module()
    for batch in (1, 3, 4):
        x = torch.randn(batch, 3, 64, 64)
        with torch.no_grad():
            ref, got = model(x), run(x)
        for k in OUTPUT_NAMES:
            torch.testing.assert_close(got[k], ref[k], atol=1e-5, rtol=1e-5)
    with pytest.raises(AssertionError, match=r"size\(\)\[0\] <= 4"):
        run(torch.randn(5, 3, 64, 64))


def test_torch_export_static_batch_one_and_errors(model: FeatureNet) -> None:
    run = export_program(model, max_batch=1).module()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(run(x)["pose6d"], model(x)["pose6d"], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="example batch 3"):
        export_program(model, max_batch=2, example=torch.zeros(3, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[B, 3, 64, 64\]"):
        export_program(model, example=torch.zeros(1, 3, 32, 32))


def test_pose_mlp_head_starts_neutral_exports_and_learns() -> None:
    from dataclasses import replace

    base = FeatureNet(FeatNetConfig(input_size=64, width=8)).eval()
    net = FeatureNet(FeatNetConfig(input_size=64, width=8, pose_mlp=32)).eval()
    missing, unexpected = net.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("pose_mlp.") for k in missing)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():  # near-zero residual at init: the per-joint estimate is kept
        torch.testing.assert_close(net(x)["pose6d"], base(x)["pose6d"], atol=0.05, rtol=0)
    mlp = randomized(replace(SMALL, pose_mlp=16), seed=1)
    program = export_program(mlp, max_batch=2, example=torch.zeros(1, 3, 64, 64))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x)["pose6d"], mlp(x)["pose6d"])
    out = mlp.train()(x)
    out["pose6d"].sum().backward()
    assert mlp.pose_mlp[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pose_mlp"):
        FeatNetConfig(pose_mlp=-1)
