"""On-disk cache of compiled engines (ONNX files, TensorRT programs).

Layout: ``<cache_dir>/<backend>/<digest>/`` holds the artifact and ``key.json``, a sidecar with
every key field plus the artifact's size and SHA-256. An entry is used only when its sidecar
matches the expected key field by field and the artifact's size and hash match; anything else
(missing, stale, corrupted, or written by another model/backend version) is rebuilt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["SIDECAR", "CacheKey", "EngineCache", "file_sha256"]

_log = logging.getLogger(__name__)
SIDECAR = "key.json"
_SCHEMA = "nbfstream.engine-cache/1"


@dataclass(frozen=True)
class CacheKey:
    """Everything a compiled engine depends on.

    ``model_hash``: ``FeatureNet.weights_hash()`` (weights + config); ``backend_version``: the
    versions of every tool that produced or runs the artifact; ``device``: device string plus,
    for GPUs, name and compute capability; ``input_shapes``: ``{"min"|"opt"|"max": [B,3,S,S]}``
    ("opt" for TensorRT only).
    """

    model_hash: str
    backend: str
    backend_version: str
    device: str
    precision: str
    input_shapes: dict[str, list[int]]

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["input_shapes"] = {k: [int(v) for v in s] for k, s in sorted(self.input_shapes.items())}
        return d

    def digest(self) -> str:
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class EngineCache:
    """Cache rooted at ``root``; see the module docstring for the layout."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def entry_dir(self, key: CacheKey) -> Path:
        return self.root / key.backend / key.digest()

    def lookup(self, key: CacheKey, artifact: str) -> Path | None:
        """Path of a valid cached artifact for ``key``, or None (with the reason logged)."""
        entry = self.entry_dir(key)
        path, side = entry / artifact, entry / SIDECAR
        if not path.is_file() or not side.is_file():
            return None
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError) as e:
            _log.warning("engine cache %s: unreadable sidecar (%s); rebuilding", entry, e)
            return None
        reason = self._mismatch(meta, key, artifact, path)
        if reason:
            _log.warning("engine cache %s: %s; rebuilding", entry, reason)
            return None
        return path

    @staticmethod
    def _mismatch(meta: dict[str, Any], key: CacheKey, artifact: str, path: Path) -> str:
        if meta.get("schema") != _SCHEMA:
            return f"schema {meta.get('schema')!r} != {_SCHEMA!r}"
        expected = key.to_dict()
        got = meta.get("key", {})
        for name, value in expected.items():
            if got.get(name) != value:
                return f"key field {name!r} is {got.get(name)!r}, expected {value!r}"
        if meta.get("artifact") != artifact:
            return f"artifact {meta.get('artifact')!r} != {artifact!r}"
        if meta.get("size") != path.stat().st_size:
            return "artifact size differs from sidecar"
        if meta.get("sha256") != file_sha256(path):
            return "artifact hash differs from sidecar"
        return ""

    def get_or_build(
        self, key: CacheKey, artifact: str, build: Callable[[Path], None]
    ) -> tuple[Path, bool]:
        """Return ``(path, built)``; ``build(path)`` writes the artifact when there is no valid
        entry. The new entry is assembled in a temporary folder and moved into place."""
        found = self.lookup(key, artifact)
        if found is not None:
            return found, False
        entry = self.entry_dir(key)
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
        try:
            build(tmp / artifact)
            path = tmp / artifact
            if not path.is_file():
                raise RuntimeError(f"engine build did not write {artifact}")
            meta = {
                "schema": _SCHEMA,
                "key": key.to_dict(),
                "artifact": artifact,
                "size": path.stat().st_size,
                "sha256": file_sha256(path),
            }
            (tmp / SIDECAR).write_text(json.dumps(meta, indent=2, sort_keys=True))
            if entry.exists():
                shutil.rmtree(entry)
            os.replace(tmp, entry)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return entry / artifact, True
