"""Video-like sequences: one take, a fixed camera, person and background (docs/conventions.md).

The body is rendered into full frames (the frame camera stays put while the person moves); each
frame's crop is then cut from the frame around the projected body (centre of the box, side =
extent x mid crop scale), as the live pipeline's detector + crop stage would. Used by the
warm-start benchmark and for the bundled sample clip.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from engines.crop import crop_affine

from .appearance import sample_appearance
from .backgrounds import BackgroundBank, colour_jitter, procedural_background
from .camera import crop_intrinsics, sample_crop_window, sample_frame_camera
from .dataset import SynthConfig, bank_split, place_body, sample_betas
from .poses import TakeBank, default_mocap_dir, split_takes
from .raster import project_points
from .scene import BodyRenderer

__all__ = ["SynthSequence", "crop_from_frame", "render_sequence"]


@dataclass
class SynthSequence:
    """Frames, crops and ground truth of a rendered sequence (T frames). SMPL parameters and
    joints are in the (fixed) camera frame; crops share them, only their intrinsics differ."""

    take: str
    fps: float
    frames: np.ndarray  # [T, H, W, 3] uint8
    K_frame: np.ndarray  # [3, 3]
    crops: np.ndarray  # [T, S, S, 3] uint8
    K_crop: np.ndarray  # [T, 3, 3]
    windows: np.ndarray  # [T, 3] (bx, by, s) in frame pixels
    global_orient: np.ndarray  # [T, 3]
    body_pose: np.ndarray  # [T, 69]
    betas: np.ndarray  # [10]
    transl: np.ndarray  # [T, 3]
    joints3d: np.ndarray  # [T, 24, 3]
    joints2d_frame: np.ndarray  # [T, 24, 2]
    joints2d_crop: np.ndarray  # [T, 24, 2]
    silhouettes: np.ndarray  # [T, H, W] bool (frame)


def crop_from_frame(
    frame: np.ndarray, window: tuple[float, float, float], S: int
) -> np.ndarray:  # [H, W, 3] -> [S, S, 3]
    """Cut the square window ``(bx, by, s)`` out of a frame and resize it to ``S x S``
    (u' = (u - bx + s / 2) S / s - 0.5; outside the frame: black)."""
    M = crop_affine(window, S)
    a = M[0, 0]
    return cv2.warpAffine(frame, M, (S, S), flags=cv2.INTER_AREA if a < 1 else cv2.INTER_LINEAR)


def _frame_background(
    rng: np.random.Generator, bank: BackgroundBank, W: int, H: int, real_prob: float
) -> np.ndarray:
    if len(bank) and rng.random() < real_prob:
        img = bank.image(int(rng.integers(len(bank))))
        h, w = img.shape[:2]
        k = max(W / w, H / h)
        img = cv2.resize(img, (int(np.ceil(w * k)), int(np.ceil(h * k))))
        y0 = int(rng.integers(0, img.shape[0] - H + 1))
        x0 = int(rng.integers(0, img.shape[1] - W + 1))
        img = np.ascontiguousarray(img[y0 : y0 + H, x0 : x0 + W])
        return colour_jitter(img, rng)
    return np.ascontiguousarray(procedural_background(rng, max(W, H))[:H, :W])


def render_sequence(
    config: SynthConfig | None = None,
    split: str = "eval",
    take: int | str = 0,
    num_frames: int = 60,
    start: int | None = None,
    fps: float = 30.0,
    frame_size: tuple[int, int] = (640, 360),
    seed: int = 0,
    renderer: BodyRenderer | None = None,
    takes: TakeBank | None = None,
) -> SynthSequence:
    """Render ``num_frames`` frames of take ``take`` (index or file name) of ``split`` at about
    ``fps`` (the take is subsampled), with one camera, person and background; deterministic by
    ``(config.seed, seed, split, take, start)``. ``frame_size`` is (width, height)."""
    cfg = config or SynthConfig()
    bsplit = bank_split(split)
    renderer = renderer or BodyRenderer()
    takes = takes or TakeBank(split_takes(cfg.mocap_dir or str(default_mocap_dir()), split))
    if isinstance(take, str):
        if take not in takes.names:
            raise ValueError(f"take {take!r} is not in split {split!r}: {takes.names}")
        take = takes.names.index(take)
    if not 0 <= take < len(takes):
        raise ValueError(f"take must be in [0, {len(takes)}), got {take}")
    seq = takes.take(take)
    step = max(1, round(seq.fps / fps))
    span = step * (num_frames - 1) + 1
    if span > len(seq):
        raise ValueError(f"take {seq.name} has {len(seq)} frames, {span} needed")
    split_code = ("train", "val", "eval").index(split)
    key = [cfg.seed, seed, 3 + split_code, take, 0 if start is None else 1 + start]
    rng = np.random.default_rng(key)
    if start is None:
        start = int(rng.integers(0, len(seq) - span + 1))
    idx = start + step * np.arange(num_frames)
    go_w = seq.global_orient[idx].float()
    bp = seq.body_pose[idx].float()
    tr_w = seq.transl[idx].float()
    betas = sample_betas(rng, cfg)
    W, H = frame_size
    ranges = replace(cfg.camera_ranges, frame_size=(W, H))
    root = renderer.body.rest_joints(betas)[0, 0]
    pelvis_w = (tr_w + root).numpy().astype(np.float64)  # [T, 3]
    target = pelvis_w.mean(0)
    # keep the whole walk in view: back off until every frame's pelvis is inside the frame
    for _ in range(20):
        cam, _ = sample_frame_camera(rng, target, ranges)
        x = (pelvis_w - cam.centre) @ cam.R.T
        u = cam.K[0, 0] * x[:, 0] / x[:, 2] + cam.K[0, 2]
        v = cam.K[1, 1] * x[:, 1] / x[:, 2] + cam.K[1, 2]
        in_u = (u > 0.1 * W).all() and (u < 0.9 * W).all()
        if (x[:, 2] > 1.0).all() and in_u and (v > 0.15 * H).all() and (v < 0.85 * H).all():
            break
        lo, hi = ranges.distance
        ranges = replace(ranges, distance=(lo * 1.15, hi * 1.15))
    app = sample_appearance(rng, bsplit)
    bg = _frame_background(rng, BackgroundBank(bsplit), W, H, cfg.real_background_prob)
    S = cfg.crop_size
    out: dict[str, list] = {k: [] for k in ("frames", "crops", "Kc", "win", "go", "tr", "j3",
                                            "j2f", "j2c", "sil")}  # fmt: skip
    for t in range(num_frames):
        params = place_body(
            renderer, cam.R, cam.centre, go_w[t : t + 1], bp[t : t + 1], betas, tr_w[t : t + 1]
        )
        verts, joints = renderer.pose(**params)
        image, mask, _, _ = renderer.render_image(verts, cam.K, (H, W), app, bg)
        uv = project_points(verts.double(), torch.as_tensor(cam.K)).numpy()
        win = sample_crop_window(None, uv, ranges)
        Kc = crop_intrinsics(cam.K, win, S)
        j = joints.double()
        out["frames"].append(image)
        out["crops"].append(crop_from_frame(image, win, S))
        out["Kc"].append(Kc)
        out["win"].append(win)
        out["go"].append(params["global_orient"][0].numpy())
        out["tr"].append(params["transl"][0].numpy())
        out["j3"].append(joints.numpy())
        out["j2f"].append(project_points(j, torch.as_tensor(cam.K)).numpy())
        out["j2c"].append(project_points(j, torch.as_tensor(Kc)).numpy())
        out["sil"].append(mask)
    f32 = np.float32
    return SynthSequence(
        take=seq.name,
        fps=seq.fps / step,
        frames=np.stack(out["frames"]),
        K_frame=cam.K.astype(f32),
        crops=np.stack(out["crops"]),
        K_crop=np.stack(out["Kc"]).astype(f32),
        windows=np.array(out["win"], f32),
        global_orient=np.stack(out["go"]).astype(f32),
        body_pose=bp.numpy().astype(f32),
        betas=betas[0].numpy().astype(f32),
        transl=np.stack(out["tr"]).astype(f32),
        joints3d=np.stack(out["j3"]).astype(f32),
        joints2d_frame=np.stack(out["j2f"]).astype(f32),
        joints2d_crop=np.stack(out["j2c"]).astype(f32),
        silhouettes=np.stack(out["sil"]),
    )
