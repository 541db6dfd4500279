"""Reading a safetensors file and its JSON sidecar (``<name>.json``), pickle-free, with errors
that name the file: missing, not JSON, another format, not safetensors (truncated, corrupt).

Shared by :meth:`engines.featnet.FeatureNet.from_checkpoint` and :func:`engines.model.load_model`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

__all__ = ["read_with_metadata"]


def read_with_metadata(
    path: str | Path, fmt: str, what: str, device: str = "cpu"
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of the safetensors file ``path`` whose sidecar says ``format``
    ``fmt``; ``what`` names the file in errors ("model", "checkpoint").
    ``FileNotFoundError`` when either file is missing, ``ValueError`` when one is unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    if not meta_path.is_file():
        raise FileNotFoundError(f"{what} metadata {meta_path} does not exist")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{what} metadata {meta_path} is not valid JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        got = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{meta_path}: format {got!r}, expected {fmt!r}")
    try:
        tensors = load_file(str(path), device=device)
    except SafetensorError as e:
        raise ValueError(f"{what} file {path} is not a readable safetensors file: {e}") from e
    return meta, tensors
