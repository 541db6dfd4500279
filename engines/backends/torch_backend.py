"""Plain PyTorch engine (eager, or ``torch.compile`` with ``EngineConfig.compile``)."""

from __future__ import annotations

import copy

import numpy as np
import torch

from engines.backends.base import DeviceUnavailableError, EngineConfig, FeatureEngine
from engines.featnet import FeatureNet

__all__ = ["TorchEngine"]


class TorchEngine(FeatureEngine):
    """Runs a private copy of the model on ``config.device`` (fp16 on CUDA only)."""

    name = "torch"

    def __init__(self, config: EngineConfig, model: FeatureNet) -> None:
        if config.backend != "torch":
            raise ValueError(f"TorchEngine needs backend 'torch', got {config.backend!r}")
        super().__init__(config, model.config.input_size)
        if config.device != "cpu" and not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {config.device!r} requested but torch.cuda.is_available() is False "
                f"(torch {torch.__version__}, CUDA build: {torch.version.cuda})"
            )
        self._dtype = torch.float16 if config.precision == "fp16" else torch.float32
        self._device = torch.device(config.device)
        self.model = copy.deepcopy(model).eval().to(self._device, self._dtype)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self._fn = self.model
        if config.compile:
            self._fn = torch.compile(self.model, dynamic=config.max_batch > 1)

    def _run(self, images: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
        x = x.to(self._device, self._dtype)
        # no_grad, not inference_mode: the fitter saves these tensors for its backward pass
        with torch.no_grad():
            out = self._fn(x)
            # fresh float32 copies: compiled graphs (CUDA graphs) may reuse output buffers
            return {k: out[k].to(torch.float32, copy=True) for k in self.output_names}

    def close(self) -> None:
        self._fn = None
        self.model = None
        super().close()
