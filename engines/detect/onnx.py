"""User-supplied ONNX person detector (onnxruntime, CPU unless told otherwise).

Expected model I/O (docs/schema.md, "ONNX detector"):
- one input, float32 ``[1, 3, h, w]``, RGB scaled to [0, 1]; the frame is letterboxed into it
  (resized keeping its aspect ratio, padded right/bottom with zeros). ``h, w`` come from the model
  when static, else from ``input_size``.
- first output ``[N, 6]`` or ``[1, N, 6]`` rows ``(x1, y1, x2, y2, score, class)`` in input
  pixels (``[N, 5]`` without class is accepted); rows of other classes than ``person_class`` and
  scores below ``score_threshold`` are dropped, then NMS.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engines.detect.boxes import clip_boxes, nms


class OnnxDetector:
    def __init__(
        self,
        path: str,
        input_size: tuple[int, int] = (640, 640),
        score_threshold: float = 0.4,
        person_class: int = 0,
        nms_iou: float = 0.5,
        providers: tuple[str, ...] = ("CPUExecutionProvider",),
    ) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"ONNX detector model not found: {path}")
        try:
            import onnxruntime as ort
        except ImportError as exc:  # optional dependency
            raise RuntimeError("the ONNX detector needs onnxruntime (pip install .[onnx])") from exc
        self.session = ort.InferenceSession(path, providers=list(providers))
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected one input, got {len(inputs)}")
        self.input_name = inputs[0].name
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ValueError(f"{path}: input must be [1, 3, h, w], got {shape}")
        h = shape[2] if isinstance(shape[2], int) else input_size[0]
        w = shape[3] if isinstance(shape[3], int) else input_size[1]
        self.size = (int(h), int(w))
        self.score_threshold, self.person_class, self.nms_iou = (
            score_threshold,
            person_class,
            nms_iou,
        )

    def detect(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image: expected uint8 [H, W, 3], got {image.dtype} {image.shape}")
        H, W = image.shape[:2]
        h, w = self.size
        s = min(h / H, w / W)
        nh, nw = max(1, round(H * s)), max(1, round(W * s))
        canvas = np.zeros((h, w, 3), np.float32)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR) / 255.0
        x = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])
        out = np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)
        if out.ndim == 3 and out.shape[0] == 1:
            out = out[0]
        if out.ndim != 2 or out.shape[1] not in (5, 6):
            raise ValueError(f"ONNX detector output must be [N, 6] or [N, 5], got {out.shape}")
        keep = out[:, 4] >= self.score_threshold
        if out.shape[1] == 6:
            keep &= np.round(out[:, 5]).astype(np.int64) == self.person_class
        out = out[keep]
        boxes, scores = out[:, :4] / s, out[:, 4].copy()
        k = nms(boxes, scores, self.nms_iou)
        return clip_boxes(boxes[k], W, H), scores[k]
