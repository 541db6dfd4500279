"""Features stage: crop each person, run the feature network on all of a frame's crops at once.

Consumes frames with ``persons`` (boxes); every person gets a square crop around its box
(engines/crop.py), the crops go through the feature engine in one batch (chunks of
``max_batch``), and each person leaves with its crop data in ``Person.extras``:

=================  ==================  ==================================================
key                shape / dtype       meaning
=================  ==================  ==================================================
``features``       [D, h, w] f2 / f4   unit feature map (stride 4), ``feature_dtype``
``pose6d``         [24, 6] f4          regression head: 6D rotation per joint (``regression_flip``:
                                       flip test-time averaged, as ``betas`` and ``cam``)
``betas``          [10] f4             regression head: shape
``cam``            [3] f4              regression head: weak perspective (s, tx, ty)
``part_logits``    [P, h, w] f2 / f4   part head (P = 25: background + 24 joints)
``crop_K``         [3, 3] f8           crop camera (frame camera's centre and axes)
``crop_window``    [3] f8              (bx, by, s) in frame pixels
=================  ==================  ==================================================

The frame gets ``extras["camera_K"]`` ([3, 3] f8), the frame camera: ``fx``/``fy``/``cx``/``cy``
when given, else from the horizontal field of view ``hfov_deg``. Frames without persons (or
without an image) pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engines.backends import EngineConfig, create_engine
from engines.crop import extract_crops, frame_intrinsics, make_crop
from engines.featnet import normalize_images
from engines.mirror import run_flip_averaged
from engines.model import DEFAULT_BUNDLE, load_model
from pipeline.messages import FrameMessage, Message
from stages.base import Stage

FEATURE_DTYPES = ("float16", "float32")


class ModelNotFoundError(FileNotFoundError):
    """The model bundle a model stage needs is missing."""


def resolve_model(path: str) -> Path:
    """The bundle path (``""``: the shipped default); ``ModelNotFoundError`` if it is missing."""
    p = Path(path).expanduser() if path else DEFAULT_BUNDLE
    if not p.is_file() or not p.with_suffix(".json").is_file():
        hint = (
            "the shipped model has not been trained/installed yet; train one with "
            "`python -m engines.train` and point params.model at it"
            if not path
            else "check params.model"
        )
        raise ModelNotFoundError(f"model bundle {p} (and its .json sidecar) not found: {hint}")
    return p


@dataclass
class FeaturesParams:
    model: str = ""  # model bundle (.safetensors + .json); "" = engines/data/nbf_model
    backend: str = "onnxruntime"  # torch | onnxruntime | tensorrt
    device: str = "cpu"
    precision: str = "fp32"
    max_batch: int = 8  # crops per engine call
    num_threads: int = 0  # onnxruntime intra-op threads (0: its default)
    cache_dir: str = ""  # compiled engines ("" = $NBF_ENGINE_CACHE or ~/.cache/nbfstream)
    crop_scale: float = 1.2  # crop side / longer box side
    min_crop: float = 32.0  # pixels
    border_value: tuple[int, int, int] = (124, 116, 104)  # RGB fill outside the frame
    hfov_deg: float = 55.0  # assumed horizontal field of view when fx is not given
    fx: float = 0.0  # frame intrinsics in pixels (0 = derive / image centre)
    fy: float = 0.0
    cx: float = 0.0
    cy: float = 0.0
    feature_dtype: str = "float16"  # precision of the feature maps sent downstream
    max_people: int = 16  # persons beyond this (lowest scores) are dropped
    torch_threads: int = 1  # torch intra-op threads, process-wide (0: leave torch's default);
    # torch's pool of 2 spinning threads slowed this stage 2.5x beside a busy fit process
    # regression head flip test-time averaged (engines.mirror.flip_average): every crop also
    # goes through the engine flipped left to right (twice the network work); PA-MPJPE of the
    # head -2.4% on the held-out sequences (README "Training and evaluation")
    regression_flip: bool = False

    def __post_init__(self) -> None:
        if self.feature_dtype not in FEATURE_DTYPES:
            raise ValueError(f"feature_dtype: {self.feature_dtype!r} is not one of "
                             f"{', '.join(FEATURE_DTYPES)}")  # fmt: skip
        if self.crop_scale <= 0 or self.min_crop <= 0:
            raise ValueError("crop_scale, min_crop: must be > 0")
        if not 0 < self.hfov_deg < 180:
            raise ValueError(f"hfov_deg: expected (0, 180), got {self.hfov_deg}")
        if self.fx < 0 or self.fy < 0:
            raise ValueError("fx, fy: must be >= 0 (0 = derive from hfov_deg)")
        if self.max_people < 1:
            raise ValueError("max_people: must be >= 1")
        if self.torch_threads < 0:
            raise ValueError("torch_threads: must be >= 0")
        self.engine_config()  # validates backend/device/precision/max_batch

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            backend=self.backend, precision=self.precision, device=self.device,
            max_batch=self.max_batch, cache_dir=self.cache_dir or None,
            num_threads=self.num_threads or None,
        )  # fmt: skip

    def camera(self, width: int, height: int) -> np.ndarray:  # -> [3, 3]
        return frame_intrinsics(
            width, height, self.hfov_deg, self.fx or None, self.fy or None,
            self.cx or None, self.cy or None,
        )  # fmt: skip


class FeatureStage(Stage):
    Params = FeaturesParams

    @classmethod
    def preflight(cls, params: FeaturesParams) -> None:
        resolve_model(params.model)

    def setup(self) -> None:
        p = self.params
        if p.torch_threads:
            torch.set_num_threads(p.torch_threads)
        bundle = load_model(resolve_model(p.model))
        self.input_size = bundle.net.config.input_size
        self.engine = create_engine(p.engine_config(), bundle.net)
        self._dtype = np.float16 if p.feature_dtype == "float16" else np.float32
        self._camera: tuple[tuple[int, int], np.ndarray] | None = None
        # one call before the first frame (allocations, lazy initialisation in the engine)
        self.run_engine(np.zeros((1, self.input_size, self.input_size, 3), np.uint8))

    def frame_camera(self, width: int, height: int) -> np.ndarray:  # -> [3, 3]
        if self._camera is None or self._camera[0] != (width, height):
            self._camera = ((width, height), self.params.camera(width, height))
        return self._camera[1]

    def run_engine(self, crops: np.ndarray) -> dict[str, torch.Tensor]:  # crops [B, S, S, 3]
        """Engine outputs for all crops, in chunks of ``max_batch``."""
        n = self.params.max_batch
        parts = [self.engine(normalize_images(crops[i : i + n])) for i in range(0, len(crops), n)]
        return {k: torch.cat([o[k] for o in parts]) for k in parts[0]}

    def process(self, msg: Message) -> list[Message]:
        if not isinstance(msg, FrameMessage) or msg.image is None or not msg.persons:
            return [msg]
        p = self.params
        if len(msg.persons) > p.max_people:
            msg.persons = sorted(msg.persons, key=lambda q: -q.score)[: p.max_people]
        h, w = msg.image.shape[:2]
        K = self.frame_camera(w, h)
        crops = [make_crop(K, q.box, self.input_size, p.crop_scale, p.min_crop)
                 for q in msg.persons]  # fmt: skip
        images = extract_crops(msg.image, crops, p.border_value)
        run = self.run_engine
        out = run_flip_averaged(run, images) if p.regression_flip else run(images)
        feats = out["features"].numpy().astype(self._dtype)
        parts = out["part_logits"].numpy().astype(self._dtype)
        pose6d, betas, cam = (out[k].numpy().astype(np.float32) for k in ("pose6d", "betas", "cam"))
        for i, (person, c) in enumerate(zip(msg.persons, crops, strict=True)):
            person.extras.update(
                features=feats[i],
                pose6d=pose6d[i],
                betas=betas[i],
                cam=cam[i],
                part_logits=parts[i],
                crop_K=c.K.copy(),
                crop_window=np.asarray(c.window, np.float64),
            )
        msg.extras["camera_K"] = K.copy()
        return [msg]

    def close(self) -> None:
        engine = getattr(self, "engine", None)
        if engine is not None:
            engine.close()
