"""Engine interface: ``FeatureEngine``, its ``EngineConfig`` and ``create_engine``.

Every backend runs the same ``engines.featnet.FeatureNet`` and returns the same outputs
(``engines.featnet.OUTPUT_NAMES``) as float32 torch tensors that the caller owns (fresh
copies, never views of an engine's buffers). Frameworks are imported lazily; a missing one
raises ``BackendUnavailableError`` naming the extra to install; there is no silent fallback.
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.featnet import OUTPUT_NAMES, FeatureNet

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "BackendUnavailableError",
    "DeviceUnavailableError",
    "EngineConfig",
    "FeatureEngine",
    "create_engine",
    "default_cache_dir",
    "load_model",
]

BACKENDS = ("torch", "onnxruntime", "tensorrt")
PRECISIONS = ("fp32", "fp16")


class BackendUnavailableError(ImportError):
    """A backend's framework is not installed; the message says what to install."""


class DeviceUnavailableError(RuntimeError):
    """The requested device (e.g. CUDA for TensorRT) is not available on this machine."""


def default_cache_dir() -> Path:
    """``$NBF_ENGINE_CACHE`` or ``$XDG_CACHE_HOME/nbfstream/engines`` (``~/.cache/...``)."""
    env = os.environ.get("NBF_ENGINE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nbfstream" / "engines"


def _is_cuda(device: str) -> bool:
    return device == "cuda" or device.startswith("cuda:")


@dataclass(frozen=True)
class EngineConfig:
    """Which backend runs the feature network, and how.

    ``max_batch``/``opt_batch`` bound the dynamic batch dimension (TensorRT optimises for
    ``opt_batch``); ``compile`` applies ``torch.compile`` (torch backend only); ``num_threads``
    sets the CPU threads of onnxruntime (None: its default); ``cache_dir`` holds compiled
    engines (None: ``default_cache_dir()``).
    """

    backend: str = "torch"
    precision: str = "fp32"
    device: str = "cpu"
    compile: bool = False
    max_batch: int = 8
    opt_batch: int = 1
    cache_dir: str | None = None
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not (self.device == "cpu" or _is_cuda(self.device)):
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
        if not 1 <= int(self.opt_batch) <= int(self.max_batch):
            raise ValueError(f"opt_batch must be in [1, max_batch], got {self.opt_batch}")
        if self.num_threads is not None and int(self.num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {self.num_threads}")
        if self.compile and self.backend != "torch":
            raise ValueError("compile=True applies to the torch backend only")
        if self.backend == "tensorrt" and not _is_cuda(self.device):
            raise ValueError(f"the tensorrt backend needs device 'cuda[:N]', got {self.device!r}")
        if self.precision == "fp16":
            if self.backend == "onnxruntime":
                raise ValueError("fp16 is supported by the torch (CUDA) and tensorrt backends")
            if not _is_cuda(self.device):
                raise ValueError("fp16 needs a CUDA device; use fp32 on the CPU")

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngineConfig:
        """Build from a mapping; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown EngineConfig keys: {unknown}")
        return cls(**d)


class FeatureEngine(ABC):
    """Runs the feature network on ``float32 [B, 3, S, S]`` normalised images.

    ``engine(images)`` returns ``{name: tensor}`` for ``OUTPUT_NAMES`` (float32, on
    ``output_device``), owned by the caller.
    """

    name: str = "base"
    output_names: tuple[str, ...] = OUTPUT_NAMES

    def __init__(self, config: EngineConfig, input_size: int) -> None:
        self.config = config
        self.input_size = int(input_size)
        self._closed = False

    @property
    def batch_sizes(self) -> range:
        """Batch sizes this engine accepts."""
        return range(1, self.config.max_batch + 1)

    @property
    def output_device(self) -> torch.device:
        return torch.device(self.config.device)

    def check_input(self, images: np.ndarray | torch.Tensor) -> None:  # images: [B, 3, S, S]
        if self._closed:
            raise RuntimeError(f"{self.name} engine is closed")
        if not isinstance(images, np.ndarray | torch.Tensor):
            raise ValueError("images must be a numpy array or torch tensor [B, 3, S, S]")
        if images.dtype not in (np.float32, torch.float32):
            raise ValueError(f"images must be float32 [B, 3, S, S], got dtype {images.dtype}")
        S = self.input_size
        shape = tuple(images.shape)
        if len(shape) != 4 or shape[1:] != (3, S, S):
            raise ValueError(f"images must be [B, 3, {S}, {S}], got {shape}")
        if shape[0] not in self.batch_sizes:
            raise ValueError(
                f"images batch {shape[0]} outside supported 1..{self.config.max_batch}"
            )

    def __call__(self, images: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        self.check_input(images)
        return self._run(images)

    @abstractmethod
    def _run(self, images: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """Run on validated input; return fresh float32 tensors keyed by ``OUTPUT_NAMES``."""

    def close(self) -> None:
        """Release the engine's resources; later calls raise."""
        self._closed = True

    def __enter__(self) -> FeatureEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        c = self.config
        return f"<{type(self).__name__} {c.backend} {c.precision} {c.device} S={self.input_size}>"


def load_model(model_or_checkpoint: FeatureNet | str | os.PathLike) -> FeatureNet:
    """A FeatureNet (returned as is) or a checkpoint path (``FeatureNet.from_checkpoint``)."""
    if isinstance(model_or_checkpoint, FeatureNet):
        return model_or_checkpoint
    if isinstance(model_or_checkpoint, str | os.PathLike):
        return FeatureNet.from_checkpoint(model_or_checkpoint)
    raise ValueError(
        f"model_or_checkpoint must be a FeatureNet or a checkpoint path, "
        f"got {type(model_or_checkpoint).__name__}"
    )


def create_engine(
    config: EngineConfig, model_or_checkpoint: FeatureNet | str | os.PathLike
) -> FeatureEngine:
    """Build the engine that ``config.backend`` names (compiled artifacts are cached)."""
    model = load_model(model_or_checkpoint)
    if config.backend == "torch":
        from engines.backends.torch_backend import TorchEngine

        return TorchEngine(config, model)
    if config.backend == "onnxruntime":
        from engines.backends.onnx_backend import OnnxRuntimeEngine

        return OnnxRuntimeEngine(config, model)
    from engines.backends.tensorrt_backend import TensorRTEngine

    return TensorRTEngine(config, model)
