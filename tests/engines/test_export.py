from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from engines.export import export, main
from tests.engines.backends._models import randomized

pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "featnet.safetensors"
    return randomized(seed=5).save_checkpoint(path, {"note": "export test"})


def test_cli_onnx_builds_then_reuses(checkpoint: Path, tmp_path, capsys) -> None:
    out = tmp_path / "engines"
    args = ["--backend", "onnx", "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*args, "--max-batch", "4"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    artifact = Path(result["artifact"])
    assert result["built"] and artifact.is_file() and artifact.is_relative_to(out)
    assert result["key"]["backend"] == "onnxruntime"
    assert result["key"]["input_shapes"]["max"] == [4, 3, 64, 64]
    assert max(result["max_abs_diff"].values()) < 1e-4
    assert main([*args, "--max-batch", "4", "--no-verify"]) == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert not again["built"] and again["artifact"] == result["artifact"]
    assert "max_abs_diff" not in again


def test_cli_tensorrt_error_is_clear(checkpoint: Path, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)
    args = ["--backend", "tensorrt", "--checkpoint", str(checkpoint), "--out", str(tmp_path)]
    assert main([*args, "--precision", "fp16"]) == 2
    assert "pip install '.[tensorrt]'" in capsys.readouterr().err


def test_cli_rejects_bad_arguments(checkpoint: Path, tmp_path, capsys) -> None:
    args = ["--backend", "onnx", "--checkpoint", str(checkpoint), "--out", str(tmp_path)]
    assert main([*args, "--precision", "fp16"]) == 2
    assert "fp16" in capsys.readouterr().err
    assert (
        main(
            [
                "--backend",
                "onnx",
                "--checkpoint",
                str(tmp_path / "no.safetensors"),
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    with pytest.raises(SystemExit):
        main(["--backend", "openvino", "--checkpoint", "x", "--out", "y"])
    with pytest.raises(ValueError, match="backend"):
        export("openvino", checkpoint, tmp_path)
