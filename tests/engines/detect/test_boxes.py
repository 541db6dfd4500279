import numpy as np
import pytest

from engines.detect.boxes import clip_boxes, iou_matrix, nms, square_window, xywh_to_xyxy


def test_iou_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 5, 5]], np.float32)
    np.testing.assert_allclose(iou_matrix(a, b)[0], [1.0, 50 / 150, 0.0, 0.25], rtol=1e-6)
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 4)


def test_nms_keeps_best_of_overlaps():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]], np.float32)
    keep = nms(boxes, np.array([0.5, 0.9, 0.3, 0.1]), 0.5)
    assert keep.tolist() == [1, 2]


def test_conversions_and_checks():
    np.testing.assert_array_equal(xywh_to_xyxy(np.array([[1, 2, 3, 4]])), [[1, 2, 4, 6]])
    np.testing.assert_array_equal(
        clip_boxes(np.array([[-9, -9, 99, 99]]), 10, 20), [[-0.5, -0.5, 9.5, 19.5]]
    )
    assert square_window(np.array([0, 0, 10, 20]), 1.0) == (5.0, 10.0, 20.0)
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        iou_matrix(np.zeros((3,)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="scores"):
        nms(np.zeros((2, 4)), np.zeros(3), 0.5)
