"""Greedy IoU tracker: stable track ids across detections, with tracking/occluded/lost states.

State per track is a dataclass; ``IouTracker`` holds the list and the next id. A track matched in
a frame is ``tracking``; unmatched it becomes ``occluded`` (box kept) for up to ``max_missed``
detection rounds, then ``lost`` (reported once, then removed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engines.detect.boxes import iou_matrix


@dataclass
class Track:
    track_id: int
    box: np.ndarray  # [4] float32 xyxy
    score: float
    state: str = "tracking"
    missed: int = 0
    hits: int = 1
    box_source: str = "detector"


@dataclass
class IouTracker:
    iou_threshold: float = 0.3
    max_missed: int = 10
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1

    def update(self, boxes: np.ndarray, scores: np.ndarray) -> list[Track]:
        """Match detections ``boxes [N, 4]``, ``scores [N]``; return every track to report."""
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        scores = np.asarray(scores, dtype=np.float32).reshape(-1)
        if scores.shape[0] != boxes.shape[0]:
            raise ValueError(f"scores: expected shape [{boxes.shape[0]}], got {scores.shape}")
        self.tracks = [t for t in self.tracks if t.state != "lost"]
        matched_t: set[int] = set()
        matched_d: set[int] = set()
        if self.tracks and len(boxes):
            ious = iou_matrix(np.stack([t.box for t in self.tracks]), boxes)
            for flat in np.argsort(-ious, axis=None, kind="stable"):
                ti, di = divmod(int(flat), ious.shape[1])
                if ious[ti, di] < self.iou_threshold:
                    break
                if ti in matched_t or di in matched_d:
                    continue
                matched_t.add(ti)
                matched_d.add(di)
                t = self.tracks[ti]
                t.box, t.score, t.state, t.missed = (
                    boxes[di].copy(),
                    float(scores[di]),
                    "tracking",
                    0,
                )
                t.hits += 1
                t.box_source = "detector"
        for ti, t in enumerate(self.tracks):
            if ti not in matched_t:
                t.missed += 1
                t.state = "lost" if t.missed > self.max_missed else "occluded"
                t.box_source = "carried"
        for di in range(len(boxes)):
            if di not in matched_d:
                self.tracks.append(Track(self.next_id, boxes[di].copy(), float(scores[di])))
                self.next_id += 1
        return list(self.tracks)

    def drop(self, track_ids: set[int]) -> None:
        """Remove these tracks now (e.g. the fit found no body in their boxes)."""
        self.tracks = [t for t in self.tracks if t.track_id not in track_ids]

    def follow(self, predicted: dict[int, tuple[np.ndarray, float]]) -> list[Track]:
        """Frames without detection: move tracks to boxes predicted by the fit."""
        self.tracks = [t for t in self.tracks if t.state != "lost"]
        for t in self.tracks:
            if t.track_id in predicted:
                box, conf = predicted[t.track_id]
                t.box = np.asarray(box, dtype=np.float32).reshape(4).copy()
                t.score, t.state, t.box_source = float(conf), "tracking", "fit"
        return list(self.tracks)
