"""Detect stage: finds people, keeps track ids, and lets the fit drive the boxes ("track by fit").

Each frame gets ``persons`` (one per live track: id, state, box, score, box_source). The detector
runs when any of these holds: no tracks yet, ``every_n`` frames since the last detection, or a
track that the fit was following has no confident, recent prediction any more. Otherwise each
track's box comes from the fit (side input ``tracks``: ``TrackFeedback`` from the fit stage),
moved along the predicted box's velocity to the current frame: the fit runs several frames
behind this stage (the queues between them), so predictions up to ``max_prediction_age`` frames
old are used. Tracks the detector found but the fit has not confirmed yet keep their box until
the next detection round; tracks the fit rejects (``TrackFeedback.lost``: no body explains the
image there) are dropped, so a false detection does not cost a full fit on every frame. Without
a fit stage the detector runs on every frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.detect import DETECTORS, IouTracker, make_detector
from pipeline.messages import FrameMessage, Message, Person, TrackFeedback, TrackPrediction
from stages.base import Stage


@dataclass
class DetectParams:
    detector: str = "hog+haar"  # hog | haar | hog+haar | onnx
    onnx_path: str = ""  # detector: onnx (see docs/schema.md for the expected model I/O)
    onnx_input_size: tuple[int, int] = (640, 640)
    score_threshold: float = 0.4  # onnx only
    person_class: int = 0  # onnx only
    max_side: int = 480  # HOG runs on the frame resized to at most this side
    haar_cascades: tuple[str, ...] = ("fullbody", "face")  # also: "upperbody" (slower)
    max_people: int = 8
    min_box_height: float = 0.0  # pixels
    every_n: int = 10  # with fit predictions: re-detect at least every N frames
    min_track_confidence: float = 0.5  # a fit prediction below this triggers detection
    max_prediction_age: int = 12  # frames; older fit predictions are ignored
    iou_threshold: float = 0.3
    max_missed: int = 3  # detection rounds (every_n frames apart) a track may go unmatched

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"detector: {self.detector!r} is not one of {', '.join(DETECTORS)}")
        if self.detector == "onnx" and not self.onnx_path:
            raise ValueError("onnx_path: required when detector is 'onnx'")
        if self.every_n < 1:
            raise ValueError("every_n: must be >= 1")


class DetectStage(Stage):
    Params = DetectParams
    side_inputs = ("tracks",)

    @classmethod
    def preflight(cls, params: DetectParams) -> None:
        cls._make(params)

    @staticmethod
    def _make(p: DetectParams):
        return make_detector(
            p.detector,
            p.onnx_path,
            p.onnx_input_size,
            p.score_threshold,
            p.person_class,
            p.max_side,
            p.haar_cascades,
        )

    def setup(self) -> None:
        p = self.params
        self.detector = self._make(p)
        self.tracker = IouTracker(p.iou_threshold, p.max_missed)
        self.last_detect = -(10**9)
        self.predictions: dict[int, TrackPrediction] = {}
        self.rejected: set[int] = set()
        self.fit_followed: set[int] = set()  # tracks whose box came from the fit last frame
        self.have_fit = False  # a fit stage has sent feedback

    def on_side(self, channel: str, msg: Message) -> None:
        if isinstance(msg, TrackFeedback):
            self.have_fit = True
            self.predictions = {t.track_id: t for t in msg.tracks}
            self.rejected |= set(msg.lost) - set(self.predictions)

    def _usable_predictions(self, msg: FrameMessage) -> dict[int, TrackPrediction]:
        """Confident, recent predictions, each moved to ``msg.index`` along its velocity."""
        preds = dict(self.predictions)
        preds.update({t.track_id: t for t in msg.tracks})  # attached upstream, if any
        p = self.params
        out = {}
        for k, t in preds.items():
            age = msg.index - t.frame_index
            if t.confidence < p.min_track_confidence or not 0 <= age <= p.max_prediction_age:
                continue
            box = np.asarray(t.box, np.float32)
            if t.velocity is not None and age > 1:
                box = box + (age - 1) * np.asarray(t.velocity, np.float32)
            if not (box[2] > box[0] and box[3] > box[1]):
                continue
            out[k] = TrackPrediction(k, box.astype(np.float32), t.confidence, t.frame_index,
                                     t.velocity)  # fmt: skip
        return out

    def process(self, msg: Message) -> list[Message]:
        if not isinstance(msg, FrameMessage) or msg.image is None:
            return [msg]
        p = self.params
        if self.rejected:  # the fit found no body in these boxes: false detections
            self.tracker.drop(self.rejected)
            self.rejected.clear()
        preds = self._usable_predictions(msg)
        live = [t for t in self.tracker.tracks if t.state != "lost"]
        need = (
            not live
            or not self.have_fit
            or msg.index - self.last_detect >= p.every_n
            or any(t.track_id in self.fit_followed and t.track_id not in preds for t in live)
        )
        if need:
            boxes, scores = self.detector.detect(msg.image)
            if p.min_box_height > 0 and len(boxes):
                ok = (boxes[:, 3] - boxes[:, 1]) >= p.min_box_height
                boxes, scores = boxes[ok], scores[ok]
            order = np.argsort(-scores, kind="stable")[: p.max_people]
            tracks = self.tracker.update(boxes[order], scores[order])
            self.last_detect = msg.index
            msg.detected = True
        else:
            tracks = self.tracker.follow({k: (t.box, t.confidence) for k, t in preds.items()})
        msg.tracks = list(preds.values())
        self.fit_followed = {t.track_id for t in tracks if t.box_source == "fit"}
        msg.persons = [
            Person(t.track_id, t.state, t.box.astype(np.float32), float(t.score), t.box_source)
            for t in tracks
        ]
        return [msg]
