"""Typed training configuration (YAML -> dataclasses, unknown keys rejected, types checked)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainConfig", "learning_rate", "load_train_config"]


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    steps: int = 3000
    batch_size: int = 16
    lr: float = 2e-4
    lr_schedule: str = "constant"  # or "cosine": decays to lr * lr_min_factor at ``steps``
    lr_min_factor: float = 0.05
    schedule_start: int = 0  # step at which the schedule (warm-up, cosine) starts: a warm restart
    warmup_steps: int = 0  # linear warm-up from 0 over this many steps after schedule_start
    weight_decay: float = 0.0
    val_every: int = 250
    val_batches: int = 8
    checkpoint_every: int = 250
    log_every: int = 10
    out_dir: str = ".cache/train/default"
    contrastive_weight: float = 1.0
    background_weight: float = 1.0
    clutter_per_image: int = 10
    # share of the clutter picks drawn from occluder pixels over the body (train.step.step);
    # 0 draws them uniformly from background and occluder pixels
    occluder_clutter: float = 0.0
    pool_slots: int = 10  # render slots M of the true-pose render that pools kernel targets
    pool_min_weight: float = 0.1  # a kernel is a target when its pooled weights sum above this
    max_targets: int = 0  # InfoNCE on at most this many random targets per batch (0 = all)
    channels_last: bool = False  # train in channels-last memory format (faster convs on CPU)
    workers: int = 1
    threads: int = 0  # torch intra-op threads (0: torch default)
    # where the network, the bank and the losses run: "cpu", "cuda", "cuda:N", or "auto" (CUDA
    # when available). The synthetic data is always rendered on CPU by the loader's workers.
    device: str = "cpu"
    init_mean_pose: bool = True  # start the pose head at the mean training pose (not the T-pose)
    featnet: dict[str, Any] = field(default_factory=dict)
    nbv: dict[str, Any] = field(default_factory=dict)
    bank: dict[str, Any] = field(default_factory=dict)
    regression: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every", "checkpoint_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"train config: {name} must be > 0")
        if self.lr <= 0:
            raise ValueError("train config: lr must be > 0")
        if not 0.0 <= self.occluder_clutter <= 1.0:
            raise ValueError("train config: occluder_clutter must be in [0, 1]")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(
                f"train config: lr_schedule must be constant|cosine, got {self.lr_schedule!r}"
            )
        if self.pool_slots < 1:
            raise ValueError("train config: pool_slots must be >= 1")
        if not 0 <= self.schedule_start < self.steps:
            raise ValueError("train config: schedule_start must be in [0, steps)")
        if self.warmup_steps < 0:
            raise ValueError("train config: warmup_steps must be >= 0")
        if self.max_targets < 0:
            raise ValueError("train config: max_targets must be >= 0 (0 = all)")
        if self.pool_min_weight < 0:
            raise ValueError("train config: pool_min_weight must be >= 0")
        d = self.device
        if not (d in ("cpu", "cuda", "auto") or (d.startswith("cuda:") and d[5:].isdigit())):
            raise ValueError(f"train config: device must be cpu|cuda|cuda:N|auto, got {d!r}")
        if not 0 < self.lr_min_factor <= 1:
            raise ValueError("train config: lr_min_factor must be in (0, 1]")

    def synth_data(self, crop_size: int) -> dict[str, Any]:
        """The synthetic data settings (``SynthConfig.from_dict``) of ``data`` at ``crop_size``,
        seeded with this config's ``seed``."""
        return {**self.data, "crop_size": crop_size, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        if not isinstance(d, dict):
            raise ValueError("train config must be a mapping")
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"train config: unknown key(s) {unknown}")
        defaults = cls()
        out = {}
        for k, v in d.items():
            want = type(getattr(defaults, k))
            if want is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, want) or (want is int and isinstance(v, bool)):
                raise ValueError(
                    f"train config: {k!r} must be {want.__name__}, got {type(v).__name__}"
                )
            out[k] = v
        return cls(**out)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Learning rate at ``step`` (0-based, counted from the first training step ever).

    The schedule runs from ``cfg.schedule_start`` (0, or the step a resumed run restarts it at)
    to ``cfg.steps``: a linear warm-up over ``cfg.warmup_steps``, then ``cfg.lr_schedule``
    (constant, or a cosine from ``lr`` down to ``lr * lr_min_factor`` at ``cfg.steps``).
    """
    t = step - cfg.schedule_start
    span = cfg.steps - cfg.schedule_start
    warm = min(1.0, (t + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.lr_schedule == "constant":
        return cfg.lr * warm
    frac = min(max(t / span, 0.0), 1.0)
    lo = cfg.lr_min_factor
    return warm * cfg.lr * (lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def load_train_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    d = yaml.safe_load(path.read_text()) or {}
    d.update(overrides or {})
    return TrainConfig.from_dict(d)
