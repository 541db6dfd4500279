"""ONNX Runtime engine: the network exported to ONNX (opset 18, dynamic batch), cached on disk.

Export uses PyTorch's ``torch.export``-based ONNX exporter (needs ``onnxscript``); the graph
has one input ``images [B, 3, S, S]`` and the outputs ``OUTPUT_NAMES`` in that order.
"""

from __future__ import annotations

import importlib
import logging
import warnings
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
from engines.featnet import OUTPUT_NAMES, FeatureNet, batch_dynamic_shapes

__all__ = [
    "ONNX_ARTIFACT",
    "OPSET",
    "OnnxRuntimeEngine",
    "build_onnx",
    "export_onnx",
    "onnx_cache_key",
]

OPSET = 18
ONNX_ARTIFACT = "featnet.onnx"
INPUT_NAME = "images"
_INSTALL = "pip install '.[onnx]'"


def _require(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailableError(
            f"the onnxruntime backend needs the Python package {module!r}: {_INSTALL}"
        ) from e


def _toolchain_version() -> str:
    ort = _require("onnxruntime")
    onnxscript = _require("onnxscript")
    return (
        f"opset{OPSET};torch={torch.__version__};onnxscript={onnxscript.__version__};"
        f"onnxruntime={ort.__version__}"
    )


def onnx_cache_key(model: FeatureNet, config: EngineConfig) -> CacheKey:
    """Cache key of the ONNX export of ``model`` for ``config``."""
    S = model.config.input_size
    return CacheKey(
        model_hash=model.weights_hash(),
        backend="onnxruntime",
        backend_version=_toolchain_version(),
        device="any",  # the ONNX file itself does not depend on the device
        precision=config.precision,
        # the ONNX graph depends on the batch range only (opt_batch is a TensorRT setting)
        input_shapes={"min": [1, 3, S, S], "max": [config.max_batch, 3, S, S]},
    )


def export_onnx(model: FeatureNet, path: str | Path, max_batch: int = 8) -> Path:
    """Export ``model`` (fp32, CPU copy) to ``path`` with a dynamic batch in [1, max_batch]."""
    _require("onnx")
    _require("onnxscript")
    import copy

    m = copy.deepcopy(model).eval().to("cpu", torch.float32)
    S = m.config.input_size
    example = torch.zeros(min(2, max_batch), 3, S, S)  # batch 1 would be specialised
    path = Path(path)
    # the exporter logs a warning per missing torchvision op; we use none of them
    reg_log = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = reg_log.level
    reg_log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                m,
                (example,),
                str(path),
                dynamo=True,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes=batch_dynamic_shapes(max_batch),
                external_data=False,
                optimize=True,
                verbose=False,
            )
    finally:
        reg_log.setLevel(level)
    return path


def build_onnx(model: FeatureNet, config: EngineConfig) -> tuple[Path, bool]:
    """Cached ONNX file for ``model``/``config``: ``(path, built_now)``."""
    key = onnx_cache_key(model, config)
    cache = EngineCache(config.resolved_cache_dir)
    return cache.get_or_build(
        key, ONNX_ARTIFACT, lambda p: export_onnx(model, p, max_batch=config.max_batch)
    )


def _providers(ort: Any, device: str) -> list[Any]:
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise DeviceUnavailableError(
            f"device {device!r} needs onnxruntime's CUDAExecutionProvider; available: "
            f"{ort.get_available_providers()} (install onnxruntime-gpu instead of onnxruntime)"
        )
    device_id = int(device.split(":")[1]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]


class OnnxRuntimeEngine(FeatureEngine):
    """ONNX Runtime session over the cached ONNX export (fp32)."""

    name = "onnxruntime"

    def __init__(self, config: EngineConfig, model: FeatureNet) -> None:
        if config.backend != "onnxruntime":
            raise ValueError(
                f"OnnxRuntimeEngine needs backend 'onnxruntime', got {config.backend!r}"
            )
        super().__init__(config, model.config.input_size)
        ort = _require("onnxruntime")
        self.onnx_path, self.built = build_onnx(model, config)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if config.num_threads is not None:
            opts.intra_op_num_threads = int(config.num_threads)
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(self.onnx_path), opts, providers=_providers(ort, config.device)
        )
        names = tuple(o.name for o in self.session.get_outputs())
        if names != OUTPUT_NAMES:
            raise RuntimeError(f"{self.onnx_path}: outputs {names}, expected {OUTPUT_NAMES}")

    @property
    def output_device(self) -> torch.device:
        return torch.device("cpu")

    def _run(self, images: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(images, torch.Tensor):
            images = images.detach().to("cpu").numpy()
        outs = self.session.run(None, {INPUT_NAME: np.ascontiguousarray(images)})
        # session.run allocates its outputs per call; copy anyway so ownership never depends
        # on onnxruntime's allocation policy (a few hundred KB, negligible)
        return {
            k: torch.from_numpy(np.array(v, copy=True))
            for k, v in zip(OUTPUT_NAMES, outs, strict=True)
        }

    def close(self) -> None:
        self.session = None
        super().close()
