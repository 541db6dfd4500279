from __future__ import annotations

import numpy as np
import pytest
import torch

from engines.backends import (
    DeviceUnavailableError,
    EngineConfig,
    FeatureEngine,
    create_engine,
    load_model,
)
from engines.featnet import OUTPUT_NAMES, FeatureNet


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="unknown EngineConfig keys"):
        EngineConfig.from_dict({"backend": "torch", "batch": 4})
    with pytest.raises(ValueError, match="backend"):
        EngineConfig(backend="openvino")
    with pytest.raises(ValueError, match="precision"):
        EngineConfig(precision="int8")
    with pytest.raises(ValueError, match="device"):
        EngineConfig(device="gpu")
    with pytest.raises(ValueError, match="opt_batch"):
        EngineConfig(max_batch=2, opt_batch=3)
    with pytest.raises(ValueError, match="compile"):
        EngineConfig(backend="onnxruntime", compile=True)
    with pytest.raises(ValueError, match="fp16"):
        EngineConfig(backend="onnxruntime", precision="fp16", device="cuda")
    with pytest.raises(ValueError, match="fp16 needs a CUDA"):
        EngineConfig(backend="torch", precision="fp16")
    cfg = EngineConfig.from_dict({"backend": "onnxruntime", "max_batch": 4, "num_threads": 2})
    assert EngineConfig.from_dict(cfg.to_dict()) == cfg


def test_torch_engine_matches_model(small_model: FeatureNet) -> None:
    engine = create_engine(EngineConfig(backend="torch", max_batch=4), small_model)
    assert isinstance(engine, FeatureEngine)
    assert engine.name == "torch" and list(engine.batch_sizes) == [1, 2, 3, 4]
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        ref = small_model(x)
    out = engine(x.numpy())
    assert tuple(out) == OUTPUT_NAMES
    for k in OUTPUT_NAMES:
        torch.testing.assert_close(out[k], ref[k], atol=0, rtol=0)
        assert out[k].requires_grad is False and not out[k].is_inference()
    engine.close()
    with pytest.raises(RuntimeError, match="closed"):
        engine(x)


def test_input_validation(small_model: FeatureNet) -> None:
    with create_engine(EngineConfig(backend="torch", max_batch=2), small_model) as engine:
        with pytest.raises(ValueError, match="float32"):
            engine(np.zeros((1, 3, 64, 64), np.float64))
        with pytest.raises(ValueError, match=r"\[B, 3, 64, 64\]"):
            engine(torch.zeros(1, 3, 32, 32))
        with pytest.raises(ValueError, match="batch 3"):
            engine(torch.zeros(3, 3, 64, 64))
        with pytest.raises(ValueError, match="numpy array or torch tensor"):
            engine([[0.0]])


def test_outputs_owned_by_caller(small_model: FeatureNet) -> None:
    engine = create_engine(EngineConfig(backend="torch"), small_model)
    x = torch.randn(1, 3, 64, 64)
    first = engine(x)
    keep = {k: v.clone() for k, v in first.items()}
    for v in first.values():
        v.fill_(123.0)
    second = engine(x)
    for k in OUTPUT_NAMES:
        torch.testing.assert_close(second[k], keep[k], atol=0, rtol=0)


def test_engine_does_not_modify_callers_model(small_model: FeatureNet) -> None:
    before = small_model.weights_hash()
    create_engine(EngineConfig(backend="torch"), small_model).close()
    assert small_model.weights_hash() == before
    assert small_model.pose_weight.requires_grad


def test_load_model_from_checkpoint(tmp_path, small_model: FeatureNet) -> None:
    path = small_model.save_checkpoint(tmp_path / "m.safetensors")
    assert load_model(path).weights_hash() == small_model.weights_hash()
    engine = create_engine(EngineConfig(backend="torch"), str(path))
    assert engine.input_size == 64
    with pytest.raises(ValueError, match="FeatureNet or a checkpoint path"):
        load_model(42)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_torch_cuda_without_gpu_is_a_clear_error(small_model: FeatureNet) -> None:
    with pytest.raises(DeviceUnavailableError, match=r"is_available\(\) is False"):
        create_engine(EngineConfig(backend="torch", device="cuda"), small_model)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_torch_cuda_parity(small_model: FeatureNet, precision: str) -> None:
    engine = create_engine(
        EngineConfig(backend="torch", device="cuda", precision=precision), small_model
    )
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = small_model(x)
    out = engine(x)
    tol = 1e-2 if precision == "fp32" else 5e-2  # fp32 convs may use TF32
    for k in OUTPUT_NAMES:
        assert out[k].dtype == torch.float32 and out[k].is_cuda
        torch.testing.assert_close(out[k].cpu(), ref[k], atol=tol, rtol=tol, msg=k)
