"""Person detection: embedded HOG/Haar detectors, optional ONNX model, boxes, IoU tracking."""

from __future__ import annotations

from engines.detect.boxes import clip_boxes, iou_matrix, nms, square_window, xywh_to_xyxy
from engines.detect.classic import CombinedDetector, HaarBodyDetector, HogPeopleDetector
from engines.detect.tracker import IouTracker, Track

DETECTORS = ("hog", "haar", "hog+haar", "onnx")


def make_detector(
    kind: str,
    onnx_path: str = "",
    onnx_input_size: tuple[int, int] = (640, 640),
    score_threshold: float = 0.4,
    person_class: int = 0,
    max_side: int = 640,
    haar_cascades: tuple[str, ...] = ("fullbody", "face"),
):
    """Detector with ``detect(image [H, W, 3] uint8) -> (boxes [N, 4], scores [N])``."""
    if kind == "hog":
        return HogPeopleDetector(max_side=max_side)
    if kind == "haar":
        return HaarBodyDetector(tuple(haar_cascades))
    if kind == "hog+haar":
        return CombinedDetector(
            HogPeopleDetector(max_side=max_side), HaarBodyDetector(tuple(haar_cascades))
        )
    if kind == "onnx":
        from engines.detect.onnx import OnnxDetector

        return OnnxDetector(onnx_path, onnx_input_size, score_threshold, person_class)
    raise ValueError(f"kind: {kind!r} is not one of {', '.join(DETECTORS)}")


__all__ = [
    "DETECTORS",
    "CombinedDetector",
    "HaarBodyDetector",
    "HogPeopleDetector",
    "IouTracker",
    "Track",
    "clip_boxes",
    "iou_matrix",
    "make_detector",
    "nms",
    "square_window",
    "xywh_to_xyxy",
]
