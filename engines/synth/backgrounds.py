"""Backgrounds: real photos (OpenCV's sample images) and procedural ones, split by image.

Real images are looked up at run time in ``engines/data/backgrounds`` (a small shipped subset,
see its LICENSE.md) and in the directories of Debian's ``opencv-doc`` package; only the names in
``REAL_IMAGES`` are used (OpenCV samples showing people are left out). Each name belongs to one
split; near-duplicate pairs share a split. When none is found, a warning is issued once per bank
and procedural backgrounds (gradients, value noise, random shapes, stripes) are used.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "BACKGROUND_DIRS",
    "REAL_IMAGES",
    "BackgroundBank",
    "colour_jitter",
    "procedural_background",
]

SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "backgrounds"
BACKGROUND_DIRS: tuple[Path, ...] = (
    SHIPPED_DIR,
    Path("/usr/share/doc/opencv-doc/examples/data"),
    Path("/usr/share/opencv4/samples/data"),
    Path("/usr/local/share/opencv4/samples/data"),
)
# OpenCV sample images without people (Apache-2.0 AND BSD-3-Clause, see LICENSE.md), by split.
REAL_IMAGES: dict[str, str] = {
    **{n: "train" for n in (
        "aero1.jpg", "aero3.jpg", "aloeL.jpg", "aloeR.jpg", "apple.jpg", "baboon.jpg",
        "board.jpg", "box_in_scene.png", "butterfly.jpg", "cards.png", "chicky_512.png",
        "ela_original.jpg", "ela_modified.jpg", "graf1.png", "graf3.png",
        "licenseplate_motion.jpg", "orange.jpg", "smarties.png", "starry_night.jpg",
        "stuff.jpg", "blox.jpg", "pic4.png", "pic5.png", "notes.png",
    )},
    **{n: "heldout" for n in (
        "building.jpg", "leuvenA.jpg", "leuvenB.jpg", "home.jpg", "fruits.jpg",
        "rubberwhale1.png", "rubberwhale2.png", "squirrel_cls.jpg", "HappyFish.jpg",
    )},
}  # fmt: skip


def colour_jitter(img: np.ndarray, rng: np.random.Generator, strength: float = 0.25) -> np.ndarray:
    """Brightness / contrast / saturation / per-channel gain jitter of a uint8 RGB image."""
    x = img.astype(np.float32)
    x = x * rng.uniform(1 - strength, 1 + strength, 3).astype(np.float32)  # gains
    mean = x.mean()
    x = (x - mean) * rng.uniform(1 - strength, 1 + strength) + mean
    grey = x.mean(-1, keepdims=True)
    x = (x - grey) * rng.uniform(1 - 2 * strength, 1 + strength) + grey
    x = x + rng.uniform(-40, 40) * strength
    return np.clip(x, 0, 255).astype(np.uint8)


def _noise(rng: np.random.Generator, S: int, cells: int) -> np.ndarray:  # -> [S, S] in [0, 1]
    g = rng.random((cells + 1, cells + 1)).astype(np.float32)
    return cv2.resize(g, (S, S), interpolation=cv2.INTER_CUBIC).clip(0, 1)


def procedural_background(rng: np.random.Generator, S: int) -> np.ndarray:  # -> [S, S, 3] uint8
    """A procedural background: gradient + multi-scale noise + random shapes / stripes."""
    c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32) / S
    t = (np.cos(ang) * xx + np.sin(ang) * yy - min(0, np.cos(ang)) - min(0, np.sin(ang))) / (
        abs(np.cos(ang)) + abs(np.sin(ang))
    )
    img = c0 + (c1 - c0) * t[..., None]
    for cells in (2, 5, 13, 37):
        if rng.random() < 0.6:
            img = img + (_noise(rng, S, cells)[..., None] - 0.5) * rng.uniform(10, 80, 3)
    kind = rng.integers(3)
    if kind == 0:  # random shapes
        for _ in range(int(rng.integers(3, 25))):
            col = tuple(float(v) for v in rng.uniform(0, 255, 3))
            p = rng.uniform(-0.1, 1.1, 2) * S
            r = rng.uniform(0.02, 0.3) * S
            if rng.random() < 0.5:
                cv2.circle(img, (int(p[0]), int(p[1])), int(r), col, -1, cv2.LINE_AA)
            else:
                q = p + rng.uniform(-1, 1, 2) * 2 * r
                cv2.rectangle(img, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), col, -1)
    elif kind == 1:  # stripes / tiles (floors, walls)
        period = rng.uniform(0.03, 0.3) * S
        a2 = rng.uniform(0, math.pi)
        u = (np.cos(a2) * xx + np.sin(a2) * yy) * S / period
        m = (u - np.floor(u) < 0.5).astype(np.float32)
        img = img * (1 - rng.uniform(0.1, 0.5) * m[..., None])
    return np.clip(img, 0, 255).astype(np.uint8)


class BackgroundBank:
    """Real background images of one split ("train" or "heldout"), loaded lazily.

    ``dirs``: directories to search (default ``BACKGROUND_DIRS``; the first match of a name wins).
    """

    def __init__(self, split: str, dirs: tuple[Path | str, ...] | None = None) -> None:
        if split not in ("train", "heldout"):
            raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
        self.split = split
        found: dict[str, Path] = {}
        for d in (Path(p) for p in (BACKGROUND_DIRS if dirs is None else dirs)):
            for name, s in REAL_IMAGES.items():
                if s == split and name not in found and (d / name).is_file():
                    found[name] = d / name
        self.paths: list[Path] = [found[n] for n in sorted(found)]
        self._cache: dict[int, np.ndarray] = {}
        self._warned = False

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, i: int) -> np.ndarray:  # -> [H, W, 3] uint8 RGB
        if i not in self._cache:
            bgr = cv2.imread(str(self.paths[i]), cv2.IMREAD_COLOR)
            if bgr is None:
                raise OSError(f"cannot read background image {self.paths[i]}")
            self._cache[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        return self._cache[i]

    def random_crop(
        self, rng: np.random.Generator, S: int, image_index: int | None = None
    ) -> np.ndarray:  # -> [S, S, 3] uint8
        """Random square crop (scale, position, flip, colour jitter) of a real image, resized."""
        img = self.image(int(rng.integers(len(self))) if image_index is None else image_index)
        h, w = img.shape[:2]
        side = int(min(h, w) * rng.uniform(0.3, 1.0))
        y0 = int(rng.integers(0, h - side + 1))
        x0 = int(rng.integers(0, w - side + 1))
        crop = img[y0 : y0 + side, x0 : x0 + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = cv2.resize(np.ascontiguousarray(crop), (S, S), interpolation=cv2.INTER_AREA)
        return colour_jitter(crop, rng)

    def sample(self, rng: np.random.Generator, S: int, real_prob: float = 0.7) -> np.ndarray:
        """A background ``[S, S, 3]`` uint8: a real crop with probability ``real_prob`` (when any
        real image was found), else procedural."""
        use_real = rng.random() < real_prob
        if use_real and len(self) == 0:
            if not self._warned:
                warnings.warn(
                    f"no real background images found for split {self.split!r} in "
                    f"{[str(d) for d in BACKGROUND_DIRS]}; using procedural backgrounds "
                    "(install Debian's opencv-doc for more)",
                    stacklevel=2,
                )
                self._warned = True
            use_real = False
        return self.random_crop(rng, S) if use_real else procedural_background(rng, S)
