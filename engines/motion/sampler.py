"""Pose statistics learned from the retargeted CMU training takes: joint limits, a Gaussian pose
prior (differentiable, torch) and a sampler of plausible random SMPL body poses.

Body poses are ``body_pose [N, 69]`` axis-angle, SMPL order (docs/conventions.md). Statistics
include each frame's left/right mirror image (the takes are few; the body is symmetric). The
holdout takes (``shared/data/mocap/holdout/``) are refused by :func:`learn_pose_stats`.
The shipped statistics (``engines/data/joint_limits.npz``) derive from the CMU Graphics Lab Motion
Capture Database (mocap.cs.cmu.edu; created with funding from NSF EIA-0196217).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engines.mirror import MIRROR_JOINTS
from engines.rotations import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = [
    "DEFAULT_LIMITS_PATH",
    "HOLDOUT_TAKES",
    "PosePrior",
    "PoseSampler",
    "PoseStats",
    "SamplerConfig",
    "learn_pose_stats",
    "mirror_body_pose",
]

DEFAULT_LIMITS_PATH = Path(__file__).resolve().parents[1] / "data" / "joint_limits.npz"
HOLDOUT_TAKES = frozenset({"cmu_10_02", "cmu_16_15", "cmu_16_31", "cmu_16_36", "cmu_61_12"})
ACKNOWLEDGEMENT = (
    "Learned from the CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu); the database "
    "was created with funding from NSF EIA-0196217."
)
# SMPL joint 1..23 -> its mirror joint, as body_pose joint indices 0..22
_MIRROR = np.array(MIRROR_JOINTS[1:]) - 1


def mirror_body_pose(body_pose: np.ndarray) -> np.ndarray:  # [N, 69] -> [N, 69]
    """Left/right mirror image (reflection in the body's x = 0 plane)."""
    p = np.asarray(body_pose).reshape(-1, 23, 3)[:, _MIRROR]
    return (p * np.array([1.0, -1.0, -1.0])).reshape(-1, 69)


@dataclass
class PoseStats:
    """Per-joint limits ``lo, hi [23, 3]`` (axis-angle components), Gaussian ``mean [69]``,
    ``cov [69, 69]`` and a bank of real poses ``bank [N, 69]``."""

    mean: np.ndarray  # [69]
    cov: np.ndarray  # [69, 69]
    lo: np.ndarray  # [23, 3]
    hi: np.ndarray  # [23, 3]
    bank: np.ndarray  # [N, 69]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        np.savez_compressed(
            path, mean=self.mean, cov=self.cov, lo=self.lo, hi=self.hi,
            bank=self.bank.astype(np.float32), acknowledgement=np.str_(ACKNOWLEDGEMENT),
        )  # fmt: skip
        return path

    @classmethod
    def load(cls, path: str | Path = DEFAULT_LIMITS_PATH) -> PoseStats:
        with np.load(Path(path), allow_pickle=False) as d:
            s = cls(*(d[k].astype(np.float64) for k in ("mean", "cov", "lo", "hi", "bank")))
        shapes = {"mean": (69,), "cov": (69, 69), "lo": (23, 3), "hi": (23, 3)}
        for k, shp in shapes.items():
            if getattr(s, k).shape != shp:
                raise ValueError(f"{path}: {k} must be {list(shp)}, got {getattr(s, k).shape}")
        if s.bank.ndim != 2 or s.bank.shape[1] != 69:
            raise ValueError(f"{path}: bank must be [N, 69], got {s.bank.shape}")
        return s

    def within(self, body_pose: np.ndarray, tol: float = 1e-6) -> np.ndarray:  # [N, 69] -> [N]
        """Whether each pose lies inside the limits."""
        p = np.asarray(body_pose).reshape(-1, 23, 3)
        return np.all((p >= self.lo - tol) & (p <= self.hi + tol), axis=(1, 2))


def learn_pose_stats(
    motions,  # iterable of SMPLMotion
    rate: float = 30.0,
    lo_pct: float = 0.5,
    margin: float = 0.1,
    bank_size: int = 1024,
    seed: int = 0,
) -> PoseStats:
    """Statistics of the frames (resampled to about ``rate`` fps) and their mirror images.
    Limits: the ``lo_pct`` / ``100 - lo_pct`` percentiles widened by ``margin`` rad and always
    containing the rest pose (0)."""
    frames = []
    for m in motions:
        if m.name in HOLDOUT_TAKES or "holdout" in m.name:
            raise ValueError(f"{m.name} is an evaluation (holdout) take: never learn from it")
        step = max(1, round(m.fps / rate))
        frames.append(np.asarray(m.body_pose[::step], dtype=np.float64))
    if not frames:
        raise ValueError("motions must contain at least one take")
    x = np.concatenate(frames)
    x = np.concatenate([x, mirror_body_pose(x)])  # [N, 69]
    p = x.reshape(-1, 23, 3)
    lo = np.minimum(np.percentile(p, lo_pct, axis=0), 0.0) - margin
    hi = np.maximum(np.percentile(p, 100 - lo_pct, axis=0), 0.0) + margin
    rng = np.random.default_rng(seed)
    bank = x[rng.choice(len(x), size=min(bank_size, len(x)), replace=False)]
    return PoseStats(x.mean(0), np.cov(x, rowvar=False), lo, hi, np.clip(bank.reshape(-1, 23, 3),
                     lo, hi).reshape(-1, 69))  # fmt: skip


class PosePrior(nn.Module):
    """Negative log-likelihood-like pose energy (differentiable):
    ``E(x) = 0.5 (x - mean)^T P (x - mean) / 69 + w_limit * sum(relu(lo - x)^2 + relu(x - hi)^2)``
    with ``P = (cov + reg^2 I)^-1``. Lower is more plausible."""

    def __init__(self, stats: PoseStats, reg: float = 0.05, w_limit: float = 10.0) -> None:
        super().__init__()
        prec = np.linalg.inv(stats.cov + reg**2 * np.eye(69))
        f32 = torch.float32
        self.register_buffer("mean", torch.as_tensor(stats.mean, dtype=f32))
        self.register_buffer("precision", torch.as_tensor(0.5 * (prec + prec.T), dtype=f32))
        self.register_buffer("lo", torch.as_tensor(stats.lo.reshape(69), dtype=f32))
        self.register_buffer("hi", torch.as_tensor(stats.hi.reshape(69), dtype=f32))
        self.w_limit = float(w_limit)

    @classmethod
    def default(cls, **kw) -> PosePrior:
        return cls(PoseStats.load(), **kw)

    def forward(self, body_pose: torch.Tensor) -> torch.Tensor:  # [B, 69] -> [B]
        if not isinstance(body_pose, torch.Tensor) or tuple(body_pose.shape[1:]) != (69,):
            got = tuple(body_pose.shape) if isinstance(body_pose, torch.Tensor) else type(body_pose)
            raise ValueError(f"body_pose must be a tensor [B, 69], got {got}")
        d = body_pose - self.mean.to(body_pose.dtype)
        maha = torch.einsum("bi,ij,bj->b", d, self.precision.to(body_pose.dtype), d)
        out = (torch.relu(self.lo.to(d.dtype) - body_pose) ** 2).sum(-1)
        out = out + (torch.relu(body_pose - self.hi.to(d.dtype)) ** 2).sum(-1)
        return 0.5 * maha / 69 + self.w_limit * out


@dataclass(frozen=True)
class SamplerConfig:
    """``noise`` rad: std of the per-joint rotation perturbing bank poses; ``gaussian_fraction``:
    share of poses drawn from the 69-d Gaussian instead of the bank."""

    noise: float = 0.1
    gaussian_fraction: float = 0.25

    def __post_init__(self) -> None:
        if not self.noise >= 0 or not 0 <= self.gaussian_fraction <= 1:
            raise ValueError(f"invalid SamplerConfig {self}")


class PoseSampler:
    """Plausible random body poses: real poses from the bank perturbed by small per-joint
    rotations, or draws from the learned Gaussian; every pose is clipped into the limits."""

    def __init__(self, stats: PoseStats | None = None, config: SamplerConfig | None = None):
        self.stats = PoseStats.load() if stats is None else stats
        self.config = SamplerConfig() if config is None else config
        self._chol = np.linalg.cholesky(self.stats.cov + 1e-8 * np.eye(69))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:  # -> [n, 69] float64
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        s, c = self.stats, self.config
        gauss = rng.random(n) < c.gaussian_fraction
        out = s.bank[rng.integers(0, len(s.bank), size=n)].astype(np.float64)
        if c.noise > 0 and n:
            noise = torch.from_numpy(rng.normal(0.0, c.noise, size=(n, 23, 3)))
            R = axis_angle_to_matrix(torch.from_numpy(out.reshape(n, 23, 3)))
            out = matrix_to_axis_angle(R @ axis_angle_to_matrix(noise)).numpy().reshape(n, 69)
        k = int(gauss.sum())
        if k:
            out[gauss] = s.mean + rng.standard_normal((k, 69)) @ self._chol.T
        return np.clip(out.reshape(n, 23, 3), s.lo, s.hi).reshape(n, 69)
