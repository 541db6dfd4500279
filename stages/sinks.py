"""File sinks of the publish stage: JSON lines, one .npz of the sequence, an overlay video."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from pipeline.messages import TRACK_STATES, FrameMessage

SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
_PERSON_ARRAYS = {  # name -> per-person shape (NaN-filled when absent)
    "global_orient": (3,),
    "body_pose": (69,),
    "betas": (10,),
    "transl": (3,),
    "joints3d": (24, 3),
    "joints2d": (24, 2),
}
_STATE_COLOURS = {"tracking": (40, 220, 40), "occluded": (240, 180, 0), "lost": (220, 40, 40)}


class JsonlSink:
    """One JSON object per frame (the published pose payload), one per line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f = path.open("w", encoding="utf-8", buffering=1)  # line-buffered: tail -f works

    def write(self, payload: dict[str, Any]) -> None:
        self._f.write(json.dumps(payload, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._f.close()


class NpzSink:
    """Whole sequence in one .npz: per-frame arrays ``[T]`` and per-person rows ``[N, ...]``.

    ``person_frame[n]`` is the frame row of person row ``n``; SMPL arrays are NaN where absent;
    ``state`` indexes ``state_names``.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.frames: dict[str, list] = {"frame_index": [], "timestamp": []}
        self.rows: dict[str, list] = {
            k: []
            for k in (
                "person_frame",
                "track_id",
                "state",
                "box",
                "score",
                "likelihood",
                *_PERSON_ARRAYS,
            )
        }

    def write(self, msg: FrameMessage) -> None:
        row = len(self.frames["frame_index"])
        self.frames["frame_index"].append(msg.index)
        self.frames["timestamp"].append(msg.timestamp)
        for p in msg.persons:
            r = self.rows
            r["person_frame"].append(row)
            r["track_id"].append(p.track_id)
            r["state"].append(TRACK_STATES.index(p.state))
            r["box"].append(np.asarray(p.box, np.float32))
            r["score"].append(p.score)
            r["likelihood"].append(np.nan if p.likelihood is None else p.likelihood)
            for k, shape in _PERSON_ARRAYS.items():
                v = getattr(p, k)
                r[k].append(
                    np.full(shape, np.nan, np.float32)
                    if v is None
                    else np.asarray(v, np.float32).reshape(shape)
                )

    def close(self) -> None:
        r = self.rows
        out = {
            "schema_version": np.int64(1),
            "frame_index": np.asarray(self.frames["frame_index"], np.int64),
            "timestamp": np.asarray(self.frames["timestamp"], np.float64),
            "person_frame": np.asarray(r["person_frame"], np.int64),
            "track_id": np.asarray(r["track_id"], np.int64),
            "state": np.asarray(r["state"], np.int8),
            "state_names": np.asarray(TRACK_STATES),
            "box": np.asarray(r["box"], np.float32).reshape(-1, 4),
            "score": np.asarray(r["score"], np.float32),
            "likelihood": np.asarray(r["likelihood"], np.float32),
        }
        for k, shape in _PERSON_ARRAYS.items():
            out[k] = np.asarray(r[k], np.float32).reshape(-1, *shape)
        np.savez(self.path, **out)


def draw_overlay(msg: FrameMessage) -> np.ndarray:  # -> [H, W, 3] uint8 RGB
    """The frame with boxes, track ids and (when fitted) the 2D skeleton."""
    img = np.ascontiguousarray(msg.image).copy()
    for p in msg.persons:
        c = _STATE_COLOURS.get(p.state, (255, 255, 255))
        x1, y1, x2, y2 = (round(float(v)) for v in p.box)
        cv2.rectangle(img, (x1, y1), (x2, y2), c, 2)
        cv2.putText(
            img,
            f"{p.track_id} {p.state}",
            (x1, max(y1 - 4, 10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4,
            c,
            1,
            cv2.LINE_AA,
        )
        if p.joints2d is not None:
            j = np.asarray(p.joints2d, np.float32).reshape(-1, 2)
            for k, parent in enumerate(SMPL_PARENTS[: len(j)]):
                if parent >= 0 and np.isfinite(j[[k, parent]]).all():
                    a = tuple(round(float(v)) for v in j[k])
                    b = tuple(round(float(v)) for v in j[parent])
                    cv2.line(img, a, b, (255, 255, 0), 2, cv2.LINE_AA)
    return img


class OverlaySink:
    """Overlay video (H.264 when the bundled FFmpeg has it, else MPEG-4 Part 2)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._c = None
        self._s = None

    def _open(self, msg: FrameMessage) -> None:
        h, w = msg.image.shape[:2]
        self._c = av.open(str(self.path), "w")
        fps = round(msg.fps) if msg.fps and msg.fps > 0 else 25
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._s = self._c.add_stream(codec, rate=fps)
        self._s.width, self._s.height = w + (w % 2), h + (h % 2)  # yuv420p needs even sizes
        self._s.pix_fmt = "yuv420p"
        if codec == "libx264":
            self._s.options = {"preset": "veryfast", "crf": "23"}

    def write(self, msg: FrameMessage) -> None:
        if msg.image is None:
            return
        if self._c is None:
            self._open(msg)
        img = draw_overlay(msg)
        h, w = img.shape[:2]
        if (w, h) != (self._s.width, self._s.height):
            pad = np.zeros((self._s.height, self._s.width, 3), np.uint8)
            pad[: min(h, pad.shape[0]), : min(w, pad.shape[1])] = img[
                : pad.shape[0], : pad.shape[1]
            ]
            img = pad
        for pkt in self._s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            self._c.mux(pkt)

    def close(self) -> None:
        if self._c is not None:
            for pkt in self._s.encode():
                self._c.mux(pkt)
            self._c.close()
