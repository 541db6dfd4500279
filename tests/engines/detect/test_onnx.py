import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engines.detect import make_detector


def _model(path, rows, size=(64, 64)):
    """A real ONNX graph: the constant boxes scaled by (1 + 0 * mean(input))."""
    const = helper.make_tensor("rows", TensorProto.FLOAT, [len(rows), 6], np.ravel(rows).tolist())
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "zero"], ["z"]),
        helper.make_node("Add", ["z", "one"], ["s"]),
        helper.make_node("Mul", ["rows", "s"], ["dets"]),
    ]
    graph = helper.make_graph(
        nodes,
        "det",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *size])],
        [helper.make_tensor_value_info("dets", TensorProto.FLOAT, [len(rows), 6])],
        initializer=[
            const,
            helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
            helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        ],
    )
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_onnx_detector_maps_boxes_back_and_filters(tmp_path):
    rows = [
        [8, 4, 24, 36, 0.9, 0],  # person
        [8, 4, 24, 36, 0.8, 2],  # another class: dropped
        [40, 0, 60, 20, 0.1, 0],
    ]  # low score: dropped
    path = _model(tmp_path / "d.onnx", rows)
    det = make_detector("onnx", onnx_path=str(path), score_threshold=0.4)
    img = np.zeros((96, 128, 3), np.uint8)  # letterboxed with scale 0.5 into 64x64
    boxes, scores = det.detect(img)
    np.testing.assert_allclose(boxes, [[16, 8, 48, 72]])
    np.testing.assert_allclose(scores, [0.9], rtol=1e-6)


def test_onnx_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        make_detector("onnx", onnx_path=str(tmp_path / "none.onnx"))
