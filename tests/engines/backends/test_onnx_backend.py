from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch

from engines.backends import EngineConfig, create_engine
from engines.backends.cache import SIDECAR
from engines.backends.onnx_backend import ONNX_ARTIFACT, OnnxRuntimeEngine, onnx_cache_key
from engines.featnet import OUTPUT_NAMES, FeatureNet
from tests.engines.backends._models import randomized

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

# ONNX Runtime vs eager torch, fp32 on the CPU: different kernels and op fusion, so compare with
# a tolerance. Measured here: <= 5e-6 on every output; 1e-4 leaves room for other CPUs.
ATOL = {"features": 1e-4, "part_logits": 1e-4, "pose6d": 1e-4, "betas": 1e-4, "cam": 1e-4}


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("engine-cache")


@pytest.fixture(scope="module")
def engine(small_model: FeatureNet, cache_dir) -> OnnxRuntimeEngine:
    cfg = EngineConfig(backend="onnxruntime", max_batch=4, num_threads=1, cache_dir=str(cache_dir))
    return create_engine(cfg, small_model)


@pytest.mark.parametrize("batch", [1, 3])
def test_parity_with_torch(engine, small_model: FeatureNet, batch: int) -> None:
    x = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref = small_model(x)
    out = engine(x)
    assert tuple(out) == OUTPUT_NAMES
    for k in OUTPUT_NAMES:
        assert out[k].shape == ref[k].shape and out[k].dtype == torch.float32
        torch.testing.assert_close(out[k], ref[k], atol=ATOL[k], rtol=1e-4, msg=k)
    norms = out["features"].norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), atol=1e-5, rtol=0)


def test_numpy_input_and_ownership(engine) -> None:
    x = torch.randn(2, 3, 64, 64).numpy()
    first = engine(x)
    keep = {k: v.clone() for k, v in first.items()}
    for v in first.values():
        v.zero_()
    second = engine(x)
    for k in OUTPUT_NAMES:
        torch.testing.assert_close(second[k], keep[k], atol=0, rtol=0)
    assert engine.output_device == torch.device("cpu")


def test_cache_reused_and_keyed(engine, small_model: FeatureNet, cache_dir) -> None:
    cfg = engine.config
    again = create_engine(cfg, small_model)
    assert not again.built and again.onnx_path == engine.onnx_path
    key = onnx_cache_key(small_model, cfg)
    assert engine.onnx_path.parent.name == key.digest()
    other = randomized(seed=7)
    assert onnx_cache_key(other, cfg).digest() != key.digest()
    bigger = EngineConfig(backend="onnxruntime", max_batch=8, cache_dir=str(cache_dir))
    assert onnx_cache_key(small_model, bigger).digest() != key.digest()
    opt2 = dataclasses.replace(cfg, opt_batch=2)  # a TensorRT-only setting: same ONNX file
    assert onnx_cache_key(small_model, opt2).digest() == key.digest()


def test_mismatched_sidecar_rebuilds(engine, small_model: FeatureNet, tmp_path) -> None:
    shutil.copytree(engine.config.resolved_cache_dir, tmp_path / "cache")
    cfg = dataclasses.replace(engine.config, cache_dir=str(tmp_path / "cache"))
    reused = create_engine(cfg, small_model)
    assert not reused.built
    side = reused.onnx_path.parent / SIDECAR
    meta = json.loads(side.read_text())
    meta["key"]["backend_version"] = "opset18;torch=0.0"  # written by another toolchain
    side.write_text(json.dumps(meta))
    rebuilt = create_engine(cfg, small_model)
    assert rebuilt.built and rebuilt.onnx_path == reused.onnx_path
    assert rebuilt.onnx_path.name == ONNX_ARTIFACT
    assert json.loads(side.read_text())["key"] == onnx_cache_key(small_model, cfg).to_dict()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(rebuilt(x)["features"], engine(x)["features"], atol=0, rtol=0)


def test_missing_onnxruntime_names_extra(monkeypatch, small_model: FeatureNet, tmp_path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes the import fail
    cfg = EngineConfig(backend="onnxruntime", cache_dir=str(tmp_path))
    with pytest.raises(ImportError, match=r"pip install '\.\[onnx\]'"):
        create_engine(cfg, small_model)
