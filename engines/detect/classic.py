"""Detectors that need no downloaded weights: OpenCV's HOG people detector and Haar cascades.

Both take a uint8 RGB frame ``[H, W, 3]`` and return ``(boxes [N, 4] float32 xyxy, scores [N])``.
Haar face and upper-body hits are extended to whole-body boxes with fixed body proportions.
Needs opencv-python 4.x (5.x removed both).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.detect.boxes import clip_boxes, nms

HAAR_CASCADES = {
    "fullbody": "haarcascade_fullbody.xml",
    "upperbody": "haarcascade_upperbody.xml",
    "face": "haarcascade_frontalface_default.xml",
}
# Whole-body box from a part box (x, y, w, h): (width factor, top offset, height factor) in part
# heights/widths; a standing adult is ~7.5 heads tall and ~3 head widths wide at the shoulders.
_EXTEND = {"fullbody": (1.0, 0.0, 1.0), "upperbody": (1.0, 0.0, 2.4), "face": (3.0, -0.4, 7.5)}


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: expected uint8 [H, W, 3], got {getattr(image, 'shape', None)}")
    if image.dtype != np.uint8:
        raise ValueError(f"image: expected dtype uint8, got {image.dtype}")
    return image


def _empty() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)


class HogPeopleDetector:
    """Dalal-Triggs HOG + linear SVM (OpenCV default people detector, 64x128 window)."""

    def __init__(
        self,
        max_side: int = 640,
        min_height: int = 160,
        hit_threshold: float = 0.0,
        scale: float = 1.05,
        nms_iou: float = 0.45,
    ) -> None:
        if not hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
            raise RuntimeError("this OpenCV has no HOG people detector (needs opencv-python 4.x)")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.max_side, self.min_height = max_side, min_height
        self.hit_threshold, self.scale, self.nms_iou = hit_threshold, scale, nms_iou

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img = _check_image(image)
        h, w = img.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        if h * s < self.min_height:  # people must be >= 128 px tall for the 64x128 window
            s = self.min_height / h
        if s != 1.0:
            img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
        rects, weights = self.hog.detectMultiScale(
            img,
            hitThreshold=self.hit_threshold,
            winStride=(8, 8),
            padding=(8, 8),
            scale=self.scale,
        )
        if len(rects) == 0:
            return _empty()
        r = np.asarray(rects, np.float32).reshape(-1, 4) / s
        boxes = np.concatenate([r[:, :2], r[:, :2] + r[:, 2:]], axis=1)
        scores = np.asarray(weights, np.float32).reshape(-1)
        keep = nms(boxes, scores, self.nms_iou)
        return clip_boxes(boxes[keep], w, h), scores[keep]


class HaarBodyDetector:
    """Viola-Jones cascades (full body, upper body, face), merged into whole-body boxes."""

    def __init__(
        self,
        cascades: tuple[str, ...] = ("fullbody", "upperbody", "face"),
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        nms_iou: float = 0.4,
        max_side: int = 320,
    ) -> None:
        self.max_side = max_side
        root = Path(cv2.data.haarcascades)
        self.cascades: dict[str, cv2.CascadeClassifier] = {}
        for name in cascades:
            if name not in HAAR_CASCADES:
                raise ValueError(f"cascades: unknown {name!r} (known: {', '.join(HAAR_CASCADES)})")
            clf = cv2.CascadeClassifier(str(root / HAAR_CASCADES[name]))
            if clf.empty():
                raise RuntimeError(f"cannot load Haar cascade {root / HAAR_CASCADES[name]}")
            self.cascades[name] = clf
        self.scale_factor, self.min_neighbors, self.nms_iou = scale_factor, min_neighbors, nms_iou

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img = _check_image(image)
        h, w = img.shape[:2]
        s = min(1.0, self.max_side / max(h, w))  # cascades are slow at full resolution
        if s != 1.0:
            img = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        gray = cv2.equalizeHist(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY))
        all_boxes, all_scores = [], []
        for name, clf in self.cascades.items():
            rects, _, weights = clf.detectMultiScale3(
                gray,
                scaleFactor=self.scale_factor,
                minNeighbors=self.min_neighbors,
                outputRejectLevels=True,
            )
            if len(rects) == 0:
                continue
            r = np.asarray(rects, np.float32).reshape(-1, 4) / s
            fw, top, fh = _EXTEND[name]
            cx = r[:, 0] + r[:, 2] / 2
            bw, y1 = r[:, 2] * fw, r[:, 1] + top * r[:, 3]
            boxes = np.stack([cx - bw / 2, y1, cx + bw / 2, y1 + r[:, 3] * fh], axis=1)
            # Cascade level weights are unbounded margins; squash to (0, 1).
            scores = 1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))
            all_boxes.append(boxes)
            all_scores.append(scores.astype(np.float32))
        if not all_boxes:
            return _empty()
        boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
        keep = nms(boxes, scores, self.nms_iou)
        return clip_boxes(boxes[keep], w, h), scores[keep]


class CombinedDetector:
    """HOG first; Haar boxes added where HOG found nobody (IoU below ``nms_iou``)."""

    def __init__(self, hog: HogPeopleDetector, haar: HaarBodyDetector, nms_iou: float = 0.3):
        self.hog, self.haar, self.nms_iou = hog, haar, nms_iou

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        b1, s1 = self.hog.detect(image)
        b2, s2 = self.haar.detect(image)
        if not len(b2):
            return b1, s1
        boxes = np.concatenate([b1, b2])
        # HOG boxes win ties: rank them above every Haar box.
        rank = np.concatenate([s1 + 1e3, s2])
        keep = nms(boxes, rank, self.nms_iou)
        return boxes[keep], np.concatenate([s1, s2])[keep]
