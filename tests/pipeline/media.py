"""Small real videos for tests: frame ``i`` carries ``i`` as 8 black/white 8x8 blocks (bits)."""

from __future__ import annotations

import socket
from pathlib import Path

import av
import numpy as np


def frame_image(i: int, width: int = 64, height: int = 48) -> np.ndarray:  # [H, W, 3] uint8
    img = np.zeros((height, width, 3), np.uint8)
    img[:, :, 0] = (10 * i) % 250
    img[:, :, 2] = 60
    for bit in range(8):
        if (i >> bit) & 1:
            img[:16, bit * 8 : bit * 8 + 8] = 255
    return img


def write_clip(
    path: Path,
    n: int = 20,
    width: int = 64,
    height: int = 48,
    codec: str = "mpeg4",
    fps: int = 25,
    options: dict | None = None,
) -> Path:
    """Encode ``n`` frames with PyAV (mpeg4 is in every PyAV build)."""
    c = av.open(str(path), "w", options=options or {})
    s = c.add_stream(codec, rate=fps)
    s.width, s.height, s.pix_fmt = width, height, "yuv420p"
    for i in range(n):
        for p in s.encode(av.VideoFrame.from_ndarray(frame_image(i, width, height), "rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


def red_level_index(image: np.ndarray) -> int:
    """Inverse of ``frame_image`` (robust to compression noise)."""
    bits = [image[4:12, b * 8 + 2 : b * 8 + 6].mean() > 128 for b in range(8)]
    return sum(1 << b for b, on in enumerate(bits) if on)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
