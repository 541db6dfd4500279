"""Model bundles (engines.model): bad files get a clear error; the shipped one is whole."""

from __future__ import annotations

import json

import pytest

from engines.model import DEFAULT_BUNDLE, load_model
from tests.stages.tiny_model import TINY_KERNELS, save_tiny_bundle


def test_bundle_round_trip_and_bad_files_are_refused(tmp_path):
    path = save_tiny_bundle(tmp_path / "m.safetensors")
    bundle = load_model(path)
    assert bundle.bank.n_kernels == TINY_KERNELS
    d = bundle.bank.dim
    assert bundle.clutter().shape == (d,)  # the mean clutter direction
    assert bundle.clutter(4).shape == (4, d)  # k-means centres of the clutter FIFO
    with pytest.raises(FileNotFoundError, match="model file"):
        load_model(tmp_path / "absent.safetensors")
    meta = path.with_suffix(".json")
    good = meta.read_text()
    meta.write_text(json.dumps({**json.loads(good), "format": "something-else"}))
    with pytest.raises(ValueError, match="format"):
        load_model(path)
    meta.unlink()
    with pytest.raises(FileNotFoundError, match="model metadata"):
        load_model(path)


def test_shipped_bundle_history_is_one_run_in_step_order():
    meta = json.loads(DEFAULT_BUNDLE.with_suffix(".json").read_text())
    steps = [r["step"] for r in meta["history"]]
    assert steps == sorted(set(steps)), "history steps repeat or go backwards"
    assert steps[-1] == meta["step"]
    assert "val_kernel_top1" in meta["history"][-1]
