"""TensorRT engine via torch-tensorrt's dynamo path (CUDA only; see docs/gpu.md).

Build: ``torch.export`` of the network (dynamic batch in [1, max_batch]) ->
``torch_tensorrt.dynamo.compile`` with ``Input(min, opt, max)`` shapes and explicit typing
(fp16 = half weights and input; outputs are cast back to float32) -> ``torch_tensorrt.save`` as
an ExportedProgram, cached under a key of model hash, torch/torch-tensorrt/TensorRT versions,
GPU (name and compute capability), precision and input shapes.
"""

from __future__ import annotations

import copy
import importlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.backends.base import (
    BackendUnavailableError,
    DeviceUnavailableError,
    EngineConfig,
    FeatureEngine,
)
from engines.backends.cache import CacheKey, EngineCache
from engines.featnet import FeatureNet, batch_dynamic_shapes, export_program

__all__ = [
    "TRT_ARTIFACT",
    "TensorRTEngine",
    "build_tensorrt",
    "import_torch_tensorrt",
    "require_cuda",
    "tensorrt_cache_key",
]

TRT_ARTIFACT = "featnet_trt.ep"
INSTALL_HINT = (
    "pip install '.[tensorrt]' on a machine with an NVIDIA GPU and a CUDA build of "
    "torch 2.13 (torch-tensorrt 2.13 needs exactly torch 2.13); see docs/gpu.md"
)


def import_torch_tensorrt() -> Any:
    """Import ``torch_tensorrt`` or raise ``BackendUnavailableError`` naming the extra."""
    try:
        return importlib.import_module("torch_tensorrt")
    except ImportError as e:
        raise BackendUnavailableError(
            f"the tensorrt backend needs torch-tensorrt ({e}): {INSTALL_HINT}"
        ) from e


def require_cuda(device: str) -> torch.device:
    """The CUDA device ``device`` names, or ``DeviceUnavailableError`` saying why not."""
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(
            f"the tensorrt backend needs a CUDA GPU, but torch.cuda.is_available() is False "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none (CPU wheel)'})"
            f"; use backend 'onnxruntime' or 'torch' on the CPU"
        )
    dev = torch.device(device)
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present"
        )
    return torch.device("cuda", index)


def _versions(trt_mod: Any) -> str:
    try:
        trt_version = importlib.import_module("tensorrt").__version__
    except ImportError:
        trt_version = "unknown"
    return (
        f"torch_tensorrt={getattr(trt_mod, '__version__', 'unknown')};tensorrt={trt_version};"
        f"torch={torch.__version__};cuda={torch.version.cuda}"
    )


def _device_description(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    return f"{device};{name};sm_{major}{minor}"


def tensorrt_cache_key(
    model_hash: str, config: EngineConfig, input_size: int, backend_version: str, device: str
) -> CacheKey:
    """Cache key of a TensorRT build (pure: usable and testable without a GPU)."""
    S = int(input_size)
    return CacheKey(
        model_hash=model_hash,
        backend="tensorrt",
        backend_version=backend_version,
        device=device,
        precision=config.precision,
        input_shapes={
            "min": [1, 3, S, S],
            "opt": [config.opt_batch, 3, S, S],
            "max": [config.max_batch, 3, S, S],
        },
    )


def _dtype(config: EngineConfig) -> torch.dtype:
    return torch.float16 if config.precision == "fp16" else torch.float32


def build_tensorrt(model: FeatureNet, config: EngineConfig) -> tuple[Path, bool]:
    """Cached TensorRT program for ``model``/``config``: ``(path, built_now)``."""
    if config.backend != "tensorrt":
        raise ValueError(f"build_tensorrt needs backend 'tensorrt', got {config.backend!r}")
    trt = import_torch_tensorrt()
    device = require_cuda(config.device)
    key = tensorrt_cache_key(
        model.weights_hash(),
        config,
        model.config.input_size,
        _versions(trt),
        _device_description(device),
    )

    def build(path: Path) -> None:
        dtype = _dtype(config)
        S = model.config.input_size
        m = copy.deepcopy(model).eval().to(device, dtype)
        # batch 2 (1 if max_batch is 1): torch.export would specialise a batch-1 example
        example = torch.zeros(min(2, config.max_batch), 3, S, S, device=device, dtype=dtype)
        program = export_program(m, max_batch=config.max_batch, example=example)
        spec = trt.Input(
            min_shape=(1, 3, S, S),
            opt_shape=(config.opt_batch, 3, S, S),
            max_shape=(config.max_batch, 3, S, S),
            dtype=dtype,
        )
        compiled = trt.dynamo.compile(
            program,
            arg_inputs=[spec],
            device=device,
            use_explicit_typing=True,  # fp16 comes from the half weights and input
            min_block_size=1,
        )
        trt.save(
            compiled,
            str(path),
            output_format="exported_program",
            arg_inputs=[example],
            dynamic_shapes=batch_dynamic_shapes(config.max_batch),
        )

    return EngineCache(config.resolved_cache_dir).get_or_build(key, TRT_ARTIFACT, build)


class TensorRTEngine(FeatureEngine):
    """Loads (building if needed) the cached TensorRT program and runs it on the GPU."""

    name = "tensorrt"

    def __init__(self, config: EngineConfig, model: FeatureNet) -> None:
        if config.backend != "tensorrt":
            raise ValueError(f"TensorRTEngine needs backend 'tensorrt', got {config.backend!r}")
        super().__init__(config, model.config.input_size)
        trt = import_torch_tensorrt()
        self._device = require_cuda(config.device)
        self._dtype = _dtype(config)
        self.engine_path, self.built = build_tensorrt(model, config)
        self._module = trt.load(str(self.engine_path)).module()

    @property
    def output_device(self) -> torch.device:
        return self._device

    def _run(self, images: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
        x = x.to(self._device, self._dtype).contiguous()
        with torch.no_grad():
            out = self._module(x)
            # TensorRT reuses its output buffers between calls: always hand back copies
            return {k: out[k].to(torch.float32, copy=True) for k in self.output_names}

    def close(self) -> None:
        self._module = None
        super().close()
