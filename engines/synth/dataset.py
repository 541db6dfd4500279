"""Deterministic synthetic training / validation / evaluation samples (a torch ``Dataset``).

Sample ``i`` of a split is a pure function of ``(config.seed, split, i)``. Splits are disjoint in
motion take (``poses.split_takes``), background image (``backgrounds.REAL_IMAGES``) and texture
id (``appearance.texture_split``): "train" uses the training banks; "val" (held-out training-dir
takes) and "eval" (``holdout/`` takes) use the held-out banks.

Every geometric quantity follows docs/conventions.md: parameters and joints in the crop camera
frame, ``K`` the crop camera. ``SynthDataset.__getitem__`` returns a dict of tensors:

======================  ================  =================================================
image                   [S, S, 3] uint8   RGB crop
global_orient           [3]               camera frame (facing the camera: ~(pi, 0, 0))
body_pose, betas        [69], [10]
transl                  [3]               camera frame (m)
K                       [3, 3]            crop camera
joints3d, joints2d      [24, 3], [24, 2]  camera frame (m); crop pixels
silhouette              [S, S] bool       rasterised body
part_map                [S, S] long       0 background, 1..24 = dominant skinning joint + 1
occluder_mask           [S, S] bool
joints_in_crop          [24] bool         projection inside the crop
joints_occluded         [24] bool         under the occluder (or outside the crop)
kernel_visible          [K] bool          front-most at >= 1 feature pixel (NBV, M = 1)
kernel_visible_unocc    [K] bool          ... at >= 1 feature pixel not under the occluder
kernel_bin              [K] long          orientation bin of the kernel's limb
take, frame, mirrored   scalars           provenance
======================  ================  =================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from engines.body import BodyModel
from engines.nbv import NBVConfig, NeuralBodyVolume

from .appearance import sample_appearance
from .backgrounds import BackgroundBank
from .camera import (
    CameraRanges,
    crop_intrinsics,
    sample_crop_window,
    sample_frame_camera,
    to_camera,
)
from .occluders import Occluder, apply_occluder, random_occluder
from .poses import TakeBank, default_mocap_dir, mirror_pose, split_takes
from .raster import project_points
from .scene import BodyRenderer, CropRender

__all__ = ["SPLITS", "SynthConfig", "SynthDataset", "bank_split"]

SPLITS = ("train", "val", "eval")
_SPLIT_CODE = {"train": 0, "val": 1, "eval": 2}


def bank_split(split: str) -> str:
    """Background / texture bank of a dataset split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return "train" if split == "train" else "heldout"


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic data settings (angles in degrees, lengths in metres). Unknown keys rejected by
    ``from_dict``."""

    crop_size: int = 192
    stride: int = 4
    seed: int = 0
    train_length: int = 100_000
    val_length: int = 512
    eval_length: int = 512
    mocap_dir: str = ""  # "" = poses.default_mocap_dir()
    occlusion_prob: float = 0.4
    occlusion_coverage: tuple[float, float] = (0.1, 0.4)
    truncation_prob: float = 0.1
    truncation: tuple[float, float] = (0.05, 0.3)
    real_background_prob: float = 0.7
    mirror_prob: float = 0.5
    betas_std: float = 1.0
    betas_clip: float = 2.5
    hfov_deg: tuple[float, float] = (40.0, 75.0)
    distance: tuple[float, float] = (2.0, 8.0)
    elevation_deg: tuple[float, float] = (-15.0, 30.0)
    crop_scale: tuple[float, float] = (1.1, 1.4)
    crop_jitter: float = 0.08
    noise_std: tuple[float, float] = (0.0, 4.0)  # Gaussian pixel noise (0..255 units)
    blur_prob: float = 0.15
    jpeg_prob: float = 0.3
    orientation: str = "code3"  # NBV orientation bins: "code3" or "paper"
    num_bins: int = 4

    def __post_init__(self) -> None:
        if self.crop_size <= 0 or self.crop_size % self.stride:
            raise ValueError(f"crop_size must be a positive multiple of stride {self.stride}")
        for name in ("occlusion_prob", "truncation_prob", "real_background_prob", "mirror_prob",
                     "blur_prob", "jpeg_prob"):  # fmt: skip
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}")
        for name in ("occlusion_coverage", "truncation", "hfov_deg", "distance", "elevation_deg",
                     "crop_scale", "noise_std"):  # fmt: skip
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name} must be (low, high) with low <= high, got {(lo, hi)}")

    @classmethod
    def from_dict(cls, d: dict) -> SynthConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown SynthConfig keys: {sorted(unknown)}")
        kw = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**kw)

    @property
    def camera_ranges(self) -> CameraRanges:
        return CameraRanges(
            hfov_deg=self.hfov_deg,
            distance=self.distance,
            elevation_deg=self.elevation_deg,
            crop_scale=self.crop_scale,
            crop_jitter=self.crop_jitter,
        )

    @property
    def nbv_config(self) -> NBVConfig:
        return NBVConfig(orientation=self.orientation, num_bins=self.num_bins)


def postprocess(image: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> np.ndarray:
    """Camera effects: slight blur, Gaussian noise, JPEG compression."""
    img = image
    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (5, 5), rng.uniform(0.5, 1.2))
    sd = rng.uniform(*cfg.noise_std)
    if sd > 0:
        noise = rng.normal(0.0, sd, img.shape).astype(np.float32)
        img = np.clip(img.astype(np.float32) + noise + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < cfg.jpeg_prob:
        q = int(rng.integers(40, 96))
        ok, buf = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        if ok:
            img = np.ascontiguousarray(cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1])
    return img


def sample_betas(rng: np.random.Generator, cfg: SynthConfig, n: int = 10) -> torch.Tensor:
    b = np.clip(rng.normal(0.0, cfg.betas_std, n), -cfg.betas_clip, cfg.betas_clip)
    return torch.as_tensor(b, dtype=torch.float32)[None]  # [1, 10]


def place_body(
    renderer: BodyRenderer,
    R: np.ndarray,
    centre: np.ndarray,
    go_w: torch.Tensor,  # [1, 3]
    body_pose: torch.Tensor,  # [1, 69]
    betas: torch.Tensor,  # [1, 10]
    transl_w: torch.Tensor,  # [1, 3]
) -> dict[str, torch.Tensor]:
    """Camera-frame SMPL parameters of a world-frame body seen by camera (R, centre)."""
    root = renderer.body.rest_joints(betas)[:, 0]
    go_c, t_c = to_camera(R, centre, go_w, transl_w, root)
    return {"global_orient": go_c, "body_pose": body_pose, "betas": betas, "transl": t_c}


def world_target(renderer: BodyRenderer, betas: torch.Tensor, transl_w: torch.Tensor) -> np.ndarray:
    """World position of the pelvis joint (rotation about it leaves it fixed)."""
    return (renderer.body.rest_joints(betas)[0, 0] + transl_w[0]).numpy().astype(np.float64)


class SynthDataset(Dataset):
    """Synthetic crops with ground truth, deterministic by ``(config.seed, split, index)``."""

    def __init__(
        self,
        config: SynthConfig | None = None,
        split: str = "train",
        renderer: BodyRenderer | None = None,
        takes: TakeBank | None = None,
        backgrounds: BackgroundBank | None = None,
    ) -> None:
        self.config = cfg = config or SynthConfig()
        self.bank_split = bank_split(split)
        self.split = split
        if renderer is None:
            body = BodyModel.default()
            renderer = BodyRenderer(body, NeuralBodyVolume(body, cfg.nbv_config))
        self.renderer = renderer
        mocap = cfg.mocap_dir or str(default_mocap_dir())
        self.takes = takes if takes is not None else TakeBank(split_takes(mocap, split))
        self.backgrounds = backgrounds or BackgroundBank(self.bank_split)
        self.length = {"train": cfg.train_length, "val": cfg.val_length, "eval": cfg.eval_length}[
            split
        ]

    def __len__(self) -> int:
        return self.length

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, _SPLIT_CODE[self.split], int(index)])

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range [0, {len(self)})")
        return self.sample(index)

    def sample(self, index: int, occlude: bool | None = None) -> dict:
        """Sample ``index`` as a dict of tensors (module docstring); ``occlude`` forces the
        random occluder on or off."""
        cfg = self.config
        rng = self.rng(index)
        S = cfg.crop_size
        ti, fi = self.takes.sample(rng)
        seq = self.takes.take(ti)
        go_w = seq.global_orient[fi : fi + 1].float()
        bp = seq.body_pose[fi : fi + 1].float()
        tr_w = seq.transl[fi : fi + 1].float()
        mirrored = bool(rng.random() < cfg.mirror_prob)
        if mirrored:
            go_w, bp, tr_w = mirror_pose(go_w, bp, tr_w)
        betas = sample_betas(rng, cfg)
        cam, _ = sample_frame_camera(
            rng, world_target(self.renderer, betas, tr_w), cfg.camera_ranges
        )
        params = place_body(self.renderer, cam.R, cam.centre, go_w, bp, betas, tr_w)
        posed = self.renderer.pose(**params)
        verts = posed[0]
        uv = project_points(verts.double(), torch.as_tensor(cam.K)).numpy()
        trunc = rng.uniform(*cfg.truncation) if rng.random() < cfg.truncation_prob else 0.0
        window = sample_crop_window(rng, uv, cfg.camera_ranges, truncate=trunc)
        K = crop_intrinsics(cam.K, window, S)
        app = sample_appearance(rng, self.bank_split)
        bg = self.backgrounds.sample(rng, S, cfg.real_background_prob)
        r = self.renderer.render_crop(params, K, S, app, bg, stride=cfg.stride, posed=posed)
        occ = None
        if occlude is None:
            occlude = bool(rng.random() < cfg.occlusion_prob)
        image = r.image
        if occlude and r.silhouette.any():
            occ = random_occluder(rng, r.silhouette, cfg.occlusion_coverage, self.backgrounds)
            image = apply_occluder(image, occ)
        image = postprocess(image, rng, cfg)
        out = ground_truth(r, occ, S, cfg.stride)
        out.update(
            image=torch.from_numpy(image),
            global_orient=params["global_orient"][0],
            body_pose=params["body_pose"][0],
            betas=params["betas"][0],
            transl=params["transl"][0],
            K=torch.as_tensor(K, dtype=torch.float32),
            take=ti,
            frame=fi,
            mirrored=mirrored,
        )
        return out


def ground_truth(r: CropRender, occ: Occluder | None, S: int, stride: int) -> dict:
    """Ground-truth tensors of a rendered crop and its (optional) occluder."""
    occ_mask = occ.mask if occ is not None else np.zeros((S, S), bool)
    j2 = r.joints2d
    inside = (j2[:, 0] >= -0.5) & (j2[:, 0] < S - 0.5) & (j2[:, 1] >= -0.5) & (j2[:, 1] < S - 0.5)
    ji = np.clip(np.round(j2).astype(np.int64), 0, S - 1)
    under = occ_mask[ji[:, 1], ji[:, 0]] & inside
    h = S // stride
    occ_f = cv2.resize(occ_mask.astype(np.float32), (h, h), interpolation=cv2.INTER_AREA) > 0.5
    front = r.kernel_front
    K = r.kernel_visible.shape[0]
    vis_unocc = np.zeros(K, bool)
    vis_unocc[front[(front >= 0) & ~occ_f]] = True
    return {
        "joints3d": torch.from_numpy(r.joints3d),
        "joints2d": torch.from_numpy(r.joints2d),
        "silhouette": torch.from_numpy(r.silhouette),
        "part_map": torch.from_numpy(r.part_map.astype(np.int64)),
        "occluder_mask": torch.from_numpy(occ_mask),
        "joints_in_crop": torch.from_numpy(inside),
        "joints_occluded": torch.from_numpy(under | ~inside),
        "kernel_visible": torch.from_numpy(r.kernel_visible),
        "kernel_visible_unocc": torch.from_numpy(vis_unocc & r.kernel_visible),
        "kernel_bin": torch.from_numpy(r.kernel_bin),
        "occluder_coverage": float(occ.coverage) if occ is not None else 0.0,
    }
