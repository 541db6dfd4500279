from __future__ import annotations

import dataclasses
import json
import sys
import types

import pytest
import torch

from engines.backends import (
    BackendUnavailableError,
    DeviceUnavailableError,
    EngineConfig,
    create_engine,
)
from engines.backends.cache import SIDECAR, EngineCache
from engines.backends.tensorrt_backend import (
    TRT_ARTIFACT,
    import_torch_tensorrt,
    require_cuda,
    tensorrt_cache_key,
)
from engines.featnet import OUTPUT_NAMES, FeatureNet
from tests.engines.backends._models import randomized

HAS_CUDA = torch.cuda.is_available()
VERSION = "torch_tensorrt=2.13.0;tensorrt=11.0;torch=2.13.0;cuda=13.0"
DEVICE = "cuda:0;NVIDIA H100;sm_90"


def _cfg(**kw) -> EngineConfig:
    return EngineConfig(**{"backend": "tensorrt", "device": "cuda", "max_batch": 4, **kw})


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="needs device 'cuda"):
        EngineConfig(backend="tensorrt")
    with pytest.raises(ValueError, match="compile"):
        EngineConfig(backend="tensorrt", device="cuda", compile=True)
    with pytest.raises(ValueError, match="opt_batch"):
        _cfg(opt_batch=5)
    cfg = _cfg(precision="fp16", opt_batch=2, device="cuda:1")
    assert (cfg.precision, cfg.opt_batch, cfg.device) == ("fp16", 2, "cuda:1")


def test_cache_key_changes(small_model: FeatureNet) -> None:
    h, S = small_model.weights_hash(), small_model.config.input_size
    key = tensorrt_cache_key(h, _cfg(), S, VERSION, DEVICE)
    assert key == tensorrt_cache_key(h, _cfg(), S, VERSION, DEVICE)
    assert key.input_shapes == {"min": [1, 3, S, S], "opt": [1, 3, S, S], "max": [4, 3, S, S]}
    other_weights = randomized(seed=11).weights_hash()
    variants = [
        tensorrt_cache_key(other_weights, _cfg(), S, VERSION, DEVICE),
        tensorrt_cache_key(h, _cfg(precision="fp16"), S, VERSION, DEVICE),
        tensorrt_cache_key(h, _cfg(max_batch=8), S, VERSION, DEVICE),
        tensorrt_cache_key(h, _cfg(opt_batch=2), S, VERSION, DEVICE),
        tensorrt_cache_key(h, _cfg(), 96, VERSION, DEVICE),
        tensorrt_cache_key(h, _cfg(), S, VERSION.replace("2.13.0", "2.13.1", 1), DEVICE),
        tensorrt_cache_key(h, _cfg(), S, VERSION, "cuda:0;NVIDIA L4;sm_89"),
    ]
    digests = {v.digest() for v in variants}
    assert key.digest() not in digests and len(digests) == len(variants)


def test_mismatched_sidecar_triggers_rebuild(small_model: FeatureNet, tmp_path) -> None:
    key = tensorrt_cache_key(small_model.weights_hash(), _cfg(), 64, VERSION, DEVICE)
    cache, calls = EngineCache(tmp_path), []

    def build(path):
        calls.append(path)
        path.write_bytes(b"serialized program")

    path, built = cache.get_or_build(key, TRT_ARTIFACT, build)
    assert built and cache.get_or_build(key, TRT_ARTIFACT, build) == (path, False)
    side = path.parent / SIDECAR
    meta = json.loads(side.read_text())
    meta["key"]["backend_version"] = VERSION.replace("tensorrt=11.0", "tensorrt=10.9")
    side.write_text(json.dumps(meta))
    assert cache.get_or_build(key, TRT_ARTIFACT, build) == (path, True)
    assert len(calls) == 2
    stale = dataclasses.replace(key, precision="fp16")
    assert cache.lookup(stale, TRT_ARTIFACT) is None


def test_missing_torch_tensorrt_names_extra(monkeypatch, small_model: FeatureNet) -> None:
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # the import fails
    with pytest.raises(BackendUnavailableError, match=r"pip install '\.\[tensorrt\]'") as e:
        create_engine(_cfg(), small_model)
    assert isinstance(e.value, ImportError)
    with pytest.raises(ImportError, match="torch-tensorrt"):
        import_torch_tensorrt()


def test_no_cuda_is_a_clear_error(monkeypatch, small_model: FeatureNet, tmp_path) -> None:
    # get past the import (an empty stand-in module) to reach the device check
    monkeypatch.setitem(sys.modules, "torch_tensorrt", types.ModuleType("torch_tensorrt"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(
        DeviceUnavailableError, match=r"needs a CUDA GPU.*is_available\(\) is False"
    ):
        create_engine(_cfg(cache_dir=str(tmp_path)), small_model)
    with pytest.raises(DeviceUnavailableError, match="onnxruntime"):
        require_cuda("cuda:0")
    assert not any(tmp_path.iterdir())  # nothing half-built


# ---------------------------------------------------------------- GPU only


@pytest.fixture(scope="module")
def trt_model() -> FeatureNet:
    pytest.importorskip("torch_tensorrt")
    return randomized()


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_tensorrt_parity(trt_model: FeatureNet, tmp_path_factory, precision, batch) -> None:
    cache = tmp_path_factory.getbasetemp() / "trt-cache"
    engine = create_engine(_cfg(precision=precision, cache_dir=str(cache)), trt_model)
    x = torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))
    with torch.no_grad():
        ref = trt_model.eval()(x)
    out = engine(x)
    # fp32: TF32 may be used by TensorRT convolutions; fp16: half weights and activations
    tol = 2e-2 if precision == "fp32" else 6e-2
    for k in OUTPUT_NAMES:
        assert out[k].dtype == torch.float32 and out[k].device.type == "cuda"
        torch.testing.assert_close(out[k].cpu(), ref[k], atol=tol, rtol=tol, msg=k)
    cos = (out["features"].cpu() * ref["features"]).sum(1)
    assert cos.min() > (0.999 if precision == "fp32" else 0.99)
    first = {k: v.clone() for k, v in out.items()}
    for v in out.values():
        v.zero_()
    again = engine(x)
    for k in OUTPUT_NAMES:
        torch.testing.assert_close(again[k], first[k], atol=0, rtol=0)
    reused = create_engine(_cfg(precision=precision, cache_dir=str(cache)), trt_model)
    assert not reused.built
