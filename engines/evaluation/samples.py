"""Evaluation samples: crops with ground truth, grouped into video sequences.

Synthetic sequences come from ``engines.synth.render_sequence`` on the "eval" split: the holdout
motion takes (``<mocap>/holdout/*.bvh``) with held-out textures and backgrounds. The "val" split
(the training directory's validation takes, also with held-out textures and backgrounds) is for
choosing settings, so that the holdout takes are only ever used to report. Real data comes
from ``engines.evaluation.realdata``. Geometry: docs/conventions.md (crop camera ``K``, joints in
the crop camera frame, crop pixels).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "EVAL_SPLITS",
    "HEAD_TOP_RATIO",
    "EvalFrame",
    "EvalSequence",
    "check_eval_split",
    "head_size_px",
    "synthetic_sequences",
]

#: Synthetic splits an evaluation may use: "eval" (holdout takes: report), "val" (tune).
EVAL_SPLITS = ("eval", "val")


def check_eval_split(split: str) -> None:
    if split not in EVAL_SPLITS:
        raise ValueError(f"split must be 'eval' or 'val' (never 'train'), got {split!r}")


#: Neck-to-head-top length over SMPL's neck-to-head-joint length (SMPL's head joint is mid-head;
#: measured on the default body at rest: 0.249 m / 0.097 m).
HEAD_TOP_RATIO = 2.57


@dataclass
class EvalFrame:
    """One crop and its ground truth. ``joints2d`` may hold NaN where unknown (real data)."""

    image: np.ndarray  # [S, S, 3] uint8 RGB
    K: np.ndarray  # [3, 3] crop camera
    joints3d: np.ndarray  # [24, 3] GT joints (camera frame; only root-relative use)
    joints2d: np.ndarray  # [24, 2] GT crop pixels (NaN = unknown)
    visible: np.ndarray  # [24] bool, joints scored by the 3D metrics
    visible2d: np.ndarray  # [24] bool, joints scored by PCKh
    head_size: float  # PCKh head size, crop pixels (NaN = no PCKh for this frame)
    silhouette: np.ndarray | None = None  # [S, S] bool body mask (needed by the Occ protocol)


@dataclass
class EvalSequence:
    name: str
    frames: list[EvalFrame]


def head_size_px(joints3d: np.ndarray, K: np.ndarray) -> float:  # [24, 3], [3, 3]
    """PCKh head size: the neck-to-head-top length (``HEAD_TOP_RATIO`` x the 3D neck-to-head
    joint distance) projected at the neck's depth, in crop pixels. Using the 3D length keeps it
    independent of the head's foreshortening in the image."""
    j = np.asarray(joints3d, np.float64)
    length = HEAD_TOP_RATIO * float(np.linalg.norm(j[15] - j[12]))
    z = float(j[12, 2])
    return float(K[0, 0]) * length / z if z > 1e-6 else float("nan")


def _crop_mask(mask: np.ndarray, window: np.ndarray, S: int) -> np.ndarray:
    from engines.synth.sequence import crop_from_frame

    m = crop_from_frame(np.repeat(mask.astype(np.uint8)[..., None] * 255, 3, axis=2), window, S)
    return m[..., 0] > 127


def synthetic_sequences(
    num_sequences: int,
    num_frames: int,
    crop_size: int,
    seed: int = 0,
    takes=None,  # engines.synth.poses.TakeBank; default: the split's takes
    renderer=None,  # engines.synth.scene.BodyRenderer
    fps: float = 30.0,
    progress=None,  # callable(str) or None
    split: str = "eval",  # "eval" (holdout takes: report) or "val" (validation takes: tune)
) -> list[EvalSequence]:
    """Render ``num_sequences`` held-out sequences (take ``i % n_takes``) of ``num_frames``."""
    from engines.synth import SynthConfig, render_sequence
    from engines.synth.poses import TakeBank, default_mocap_dir, split_takes

    check_eval_split(split)
    cfg = SynthConfig(crop_size=crop_size, seed=seed)
    if takes is None:
        takes = TakeBank(split_takes(default_mocap_dir(), split))
    out = []
    for i in range(num_sequences):
        if progress is not None:
            progress(f"render sequence {i + 1}/{num_sequences}")
        ti = i % len(takes)
        seq = render_sequence(
            cfg, split, take=ti, num_frames=num_frames, fps=fps, seed=seed + i // len(takes),
            renderer=renderer, takes=takes,
        )  # fmt: skip
        frames = []
        for t in range(num_frames):
            j2 = seq.joints2d_crop[t].astype(np.float64)
            inside = ((j2 >= -0.5) & (j2 < crop_size - 0.5)).all(axis=1)
            K = seq.K_crop[t].astype(np.float64)
            frames.append(
                EvalFrame(
                    image=seq.crops[t],
                    K=K,
                    joints3d=seq.joints3d[t].astype(np.float64),
                    joints2d=j2,
                    visible=inside,
                    visible2d=inside.copy(),
                    head_size=head_size_px(seq.joints3d[t], K),
                    silhouette=_crop_mask(seq.silhouettes[t], seq.windows[t], crop_size),
                )
            )
        out.append(EvalSequence(f"{seq.take}#{i}", frames))
    return out
