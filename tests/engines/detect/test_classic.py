from pathlib import Path

import cv2
import matplotlib
import numpy as np
import pytest

from engines.detect import make_detector
from engines.detect.boxes import iou_matrix
from engines.detect.classic import HaarBodyDetector

# A real photograph of a person shipped with matplotlib (Grace Hopper, 512x600).
PHOTO = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


@pytest.fixture(scope="module")
def photo():
    return cv2.cvtColor(cv2.imread(str(PHOTO)), cv2.COLOR_BGR2RGB)


def test_haar_finds_the_person(photo):
    boxes, scores = HaarBodyDetector(("face",)).detect(photo)
    assert boxes.shape == (1, 4) and 0.5 < scores[0] <= 1
    x1, y1, x2, y2 = boxes[0]
    # her face is around (250, 200); the body box must contain it and be taller than wide
    assert x1 < 250 < x2 and y1 < 200 < y2 and (y2 - y1) > (x2 - x1)


def test_combined_default_detector(photo):
    boxes, scores = make_detector("hog+haar").detect(photo)
    assert len(boxes) >= 1 and boxes.dtype == np.float32 and scores.shape == (len(boxes),)
    face_body = HaarBodyDetector(("face",)).detect(photo)[0]
    assert iou_matrix(boxes, face_body).max() > 0.5


def test_empty_scene_gives_no_people():
    img = np.full((240, 320, 3), 128, np.uint8)
    for kind in ("hog", "haar"):
        boxes, scores = make_detector(kind).detect(img)
        assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_bad_inputs():
    det = make_detector("hog")
    with pytest.raises(ValueError, match="uint8"):
        det.detect(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        det.detect(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="kind"):
        make_detector("yolo")
