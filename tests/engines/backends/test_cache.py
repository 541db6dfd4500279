from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engines.backends.cache import SIDECAR, CacheKey, EngineCache


def _key(**kw) -> CacheKey:
    base = dict(
        model_hash="ab" * 32,
        backend="onnxruntime",
        backend_version="opset18;torch=2.13.0",
        device="any",
        precision="fp32",
        input_shapes={"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [4, 3, 64, 64]},
    )
    base.update(kw)
    return CacheKey(**base)


class _Builder:
    """Writes a given payload and counts its calls."""

    def __init__(self, payload: bytes = b"engine-bytes") -> None:
        self.payload, self.calls = payload, 0

    def __call__(self, path: Path) -> None:
        self.calls += 1
        path.write_bytes(self.payload)


def test_digest_changes_with_every_field() -> None:
    key = _key()
    assert key.digest() == _key().digest()
    changes = {
        "model_hash": "cd" * 32,
        "backend": "tensorrt",
        "backend_version": "opset18;torch=2.13.1",
        "device": "cuda:0",
        "precision": "fp16",
        "input_shapes": {"min": [1, 3, 64, 64], "opt": [1, 3, 64, 64], "max": [8, 3, 64, 64]},
    }
    for name, value in changes.items():
        assert dataclasses.replace(key, **{name: value}).digest() != key.digest(), name


def test_build_once_then_hit(tmp_path) -> None:
    cache, build = EngineCache(tmp_path), _Builder()
    path, built = cache.get_or_build(_key(), "a.bin", build)
    assert built and path.read_bytes() == b"engine-bytes" and build.calls == 1
    side = json.loads((path.parent / SIDECAR).read_text())
    assert side["key"] == _key().to_dict() and side["artifact"] == "a.bin"
    path2, built2 = cache.get_or_build(_key(), "a.bin", build)
    assert path2 == path and not built2 and build.calls == 1
    assert not [p for p in path.parent.parent.iterdir() if p.name.startswith(".")]


def test_mismatched_sidecar_triggers_rebuild(tmp_path) -> None:
    cache, build = EngineCache(tmp_path), _Builder()
    path, _ = cache.get_or_build(_key(), "a.bin", build)
    side = path.parent / SIDECAR
    meta = json.loads(side.read_text())
    meta["key"]["precision"] = "fp16"  # an entry written for another key
    side.write_text(json.dumps(meta))
    assert cache.lookup(_key(), "a.bin") is None
    _, built = cache.get_or_build(_key(), "a.bin", build)
    assert built and build.calls == 2
    assert json.loads(side.read_text())["key"]["precision"] == "fp32"


@pytest.mark.parametrize("damage", ["truncate", "flip", "no_sidecar", "bad_json"])
def test_damaged_entry_rebuilt(tmp_path, damage: str) -> None:
    cache, build = EngineCache(tmp_path), _Builder()
    path, _ = cache.get_or_build(_key(), "a.bin", build)
    if damage == "truncate":
        path.write_bytes(b"engine")
    elif damage == "flip":
        path.write_bytes(b"engine-bytez")
    elif damage == "no_sidecar":
        (path.parent / SIDECAR).unlink()
    else:
        (path.parent / SIDECAR).write_text("{not json")
    assert cache.lookup(_key(), "a.bin") is None
    path2, built = cache.get_or_build(_key(), "a.bin", build)
    assert built and path2.read_bytes() == b"engine-bytes"


def test_failed_build_leaves_no_entry(tmp_path) -> None:
    cache = EngineCache(tmp_path)

    def fail(path: Path) -> None:
        path.write_bytes(b"partial")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="compiler crashed"):
        cache.get_or_build(_key(), "a.bin", fail)
    assert cache.lookup(_key(), "a.bin") is None
    assert not any((tmp_path / "onnxruntime").iterdir())
