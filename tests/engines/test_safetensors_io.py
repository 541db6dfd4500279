"""engines.safetensors_io: every unreadable file gives an error that names it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from engines.safetensors_io import read_with_metadata


@pytest.fixture
def files(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(6.0).reshape(2, 3)}, str(path))
    path.with_suffix(".json").write_text(json.dumps({"format": "fmt-1", "x": 1}))
    return path


def test_reads_tensors_and_metadata(files):
    meta, tensors = read_with_metadata(files, "fmt-1", "model")
    assert meta["x"] == 1
    torch.testing.assert_close(tensors["a"], torch.arange(6.0).reshape(2, 3))


def test_missing_files(files, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"model file .*absent"):
        read_with_metadata(tmp_path / "absent.safetensors", "fmt-1", "model")
    files.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match=r"model metadata .*w\.json"):
        read_with_metadata(files, "fmt-1", "model")


@pytest.mark.parametrize("data", [b"{not json", b"[1, 2]", b'{"format": "other"}', b"\xff\xfe\x00"])
def test_bad_metadata(files, data):
    files.with_suffix(".json").write_bytes(data)
    with pytest.raises(ValueError, match=r"w\.json"):
        read_with_metadata(files, "fmt-1", "checkpoint")


@pytest.mark.parametrize("cut", [0, 8, -4])
def test_truncated_or_corrupt_tensors(files, cut):
    data = files.read_bytes()
    files.write_bytes(b"garbage123456789" if cut == 0 else data[:cut])
    with pytest.raises(ValueError, match=r"checkpoint file .*w\.safetensors is not a readable"):
        read_with_metadata(files, "fmt-1", "checkpoint")
