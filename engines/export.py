"""Build and cache a compiled feature-network engine ahead of time.

    python -m engines.export --backend onnx --checkpoint CKPT.safetensors --out DIR
    python -m engines.export --backend tensorrt --checkpoint CKPT --out DIR --precision fp16

``DIR`` is an engine cache (engines/backends/cache.py): run the pipeline with the engine's
``cache_dir`` set to it and the artifact is found instead of rebuilt. The last line printed is a
JSON summary (artifact path, whether it was built now, cache key fields, parity check).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from engines.backends.base import EngineConfig, create_engine
from engines.backends.cache import SIDECAR
from engines.featnet import FeatureNet

__all__ = ["export", "main"]

_BACKENDS = {"onnx": "onnxruntime", "tensorrt": "tensorrt"}


def export(
    backend: str,
    checkpoint: str | Path,
    out: str | Path,
    precision: str = "fp32",
    max_batch: int = 8,
    opt_batch: int = 1,
    device: str | None = None,
    verify: bool = True,
) -> dict[str, Any]:
    """Build (or find) the engine in cache ``out``; optionally check it against torch."""
    if backend not in _BACKENDS:
        raise ValueError(f"backend must be one of {sorted(_BACKENDS)}, got {backend!r}")
    model = FeatureNet.from_checkpoint(checkpoint)
    if device is None:
        device = "cuda" if backend == "tensorrt" else "cpu"
    config = EngineConfig(
        backend=_BACKENDS[backend],
        precision=precision,
        device=device,
        max_batch=max_batch,
        opt_batch=opt_batch,
        cache_dir=str(out),
    )
    if backend == "onnx":
        from engines.backends.onnx_backend import build_onnx as build
    else:
        from engines.backends.tensorrt_backend import build_tensorrt as build
    path, built = build(model, config)
    result: dict[str, Any] = {"artifact": str(path), "built": built, "backend": config.backend}
    result["key"] = json.loads((path.parent / SIDECAR).read_text())["key"]
    if verify:
        result["max_abs_diff"] = _verify(model, config)
    return result


def _verify(model: FeatureNet, config: EngineConfig) -> dict[str, float]:
    """Max |engine - torch fp32| per output on a fixed random batch of 2 (or 1)."""
    gen = torch.Generator().manual_seed(0)
    S = model.config.input_size
    x = torch.randn(min(2, config.max_batch), 3, S, S, generator=gen)
    with torch.no_grad():
        ref = model.eval()(x)
    with create_engine(config, model) as engine:
        got = engine(x)
    return {k: float((got[k].cpu() - ref[k]).abs().max()) for k in ref}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engines.export", description=__doc__.split("\n")[0])
    p.add_argument("--backend", required=True, choices=sorted(_BACKENDS))
    p.add_argument("--checkpoint", required=True, help="FeatureNet .safetensors (+ .json)")
    p.add_argument("--out", required=True, help="engine cache folder")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16"])
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--opt-batch", type=int, default=1)
    p.add_argument("--device", default=None, help="default: cuda for tensorrt, cpu for onnx")
    p.add_argument("--no-verify", action="store_true", help="skip the parity check vs torch")
    a = p.parse_args(argv)
    try:
        result = export(
            a.backend,
            a.checkpoint,
            a.out,
            precision=a.precision,
            max_batch=a.max_batch,
            opt_batch=a.opt_batch,
            device=a.device,
            verify=not a.no_verify,
        )
    except (ImportError, RuntimeError, ValueError, FileNotFoundError) as e:
        print(f"engines.export: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
