"""Training loop of the feature network and its kernel features (``python -m engines.train``).

Progress bar, periodic validation (losses, kernel_top1, regression MPJPE / PA-MPJPE), checkpoints
as safetensors + JSON metadata (:mod:`engines.model`), resume from the last checkpoint, fixed seed.
"""

from __future__ import annotations

import functools
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from engines.body import BodyModel
from engines.featnet import FeatNetConfig, FeatureNet, normalize_images
from engines.metrics import mpjpe, pa_mpjpe
from engines.model import ModelBundle, body_model_hash, code_version
from engines.nbv import NBVConfig, NeuralBodyVolume
from engines.rotations import rot6d_to_matrix
from engines.train.config import TrainConfig, learning_rate
from engines.train.contrastive import BankConfig, FeatureBank
from engines.train.regression import RegressionWeights
from engines.train.step import BATCH_KEYS, StepOutputs, body_joints_from_rotmats, step

__all__ = ["Trainer", "collate", "evaluate_regression", "mean_pose_6d", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``TrainConfig.device`` as a torch device; a CUDA device that is not there is an error
    (:class:`engines.backends.base.DeviceUnavailableError`), never a silent fall-back to CPU."""
    from engines.backends.base import DeviceUnavailableError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"train config asks for device {name!r} but CUDA is not available "
                f"(torch {torch.__version__}, built with CUDA: {torch.version.cuda}); "
                "use device: cpu, or install a CUDA build of torch (docs/gpu.md)"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    return dev


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    if all(v.device == device for v in batch.values()):
        return batch
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def mean_pose_6d() -> torch.Tensor:  # -> [23, 6]
    return _mean_pose_6d().clone()


@functools.lru_cache(maxsize=1)
def _mean_pose_6d() -> torch.Tensor:  # -> [23, 6]
    """Mean body pose of the training takes (engines/data/joint_limits.npz) in the 6D
    representation: the average of the rotation matrices' first two columns."""
    from engines.motion.sampler import PoseStats
    from engines.rotations import axis_angle_to_matrix, matrix_to_rot6d

    bank = torch.as_tensor(PoseStats.load().bank, dtype=torch.float32).reshape(-1, 23, 3)
    return matrix_to_rot6d(axis_angle_to_matrix(bank)).mean(0)


def collate(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack the :data:`engines.train.step.BATCH_KEYS` of each sample (numpy or tensors)."""
    return {
        k: torch.stack([torch.as_tensor(np.asarray(s[k])) for s in samples]) for k in BATCH_KEYS
    }


def _loader(dataset: Dataset, cfg: TrainConfig, shuffle: bool, seed: int,
            pin_memory: bool = False) -> DataLoader:  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset, batch_size=cfg.batch_size, shuffle=shuffle, num_workers=cfg.workers,
        collate_fn=collate, generator=g, drop_last=shuffle, pin_memory=pin_memory,
        persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers > 0 else None,
    )  # fmt: skip


@torch.no_grad()
def evaluate_regression(
    net: FeatureNet, body: BodyModel, batch: dict[str, torch.Tensor]
) -> tuple[np.ndarray, np.ndarray]:  # -> pred joints [B, 24, 3], gt joints [B, 24, 3]
    out = net(normalize_images(batch["image"]))
    pred = body_joints_from_rotmats(body, rot6d_to_matrix(out["pose6d"]), out["betas"])
    return pred.cpu().numpy(), batch["joints3d"].float().cpu().numpy()


class Trainer:
    """Owns the network, the bank, the optimiser and the data; ``run()`` trains to ``steps``.

    Everything it owns lives on ``cfg.device`` (a caller's ``body`` is copied there, not moved);
    checkpoints are written from CPU copies and load on any device."""

    def __init__(self, cfg: TrainConfig, train_set: Dataset, val_set: Dataset,
                 body: BodyModel | None = None) -> None:  # fmt: skip
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.body = body or BodyModel.default()
        self.nbv_config = NBVConfig.from_dict(cfg.nbv)
        self.nbv = NeuralBodyVolume(self.body, self.nbv_config)
        if self.device.type != "cpu":
            import copy

            self.body = copy.deepcopy(self.body).to(self.device)
            self.nbv = self.nbv.to(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.net = FeatureNet(FeatNetConfig.from_dict(cfg.featnet))
        if cfg.init_mean_pose:
            with torch.no_grad():
                self.net.pose_bias[1:] = mean_pose_6d()
        self.net = self.net.to(self.device)
        if cfg.channels_last:  # conv weights only; checkpoints are written contiguous
            self.net = self.net.to(memory_format=torch.channels_last)
        self.bank = FeatureBank(
            self.nbv.num_kernels, self.nbv.num_bins, self.net.config.feature_dim,
            BankConfig(**cfg.bank), seed=cfg.seed,
        ).to(self.device)  # fmt: skip
        self.weights = RegressionWeights.from_dict(cfg.regression)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=cfg.lr,
                                    weight_decay=cfg.weight_decay)  # fmt: skip
        self.train_set, self.val_set = train_set, val_set
        self.out_dir = Path(cfg.out_dir)
        self.step_count = 0
        self.history: list[dict[str, Any]] = []
        self.gen = torch.Generator().manual_seed(cfg.seed + 1)

    # ----------------------------------------------------------------- checkpoints
    @property
    def last_path(self) -> Path:
        return self.out_dir / "last.safetensors"

    def bundle(self) -> ModelBundle:
        meta = {
            "body_model_hash": body_model_hash(self.body),
            "code_version": code_version(),
            "train_config": self.cfg.to_dict(),
            "step": self.step_count,
        }
        return ModelBundle(self.net, self.nbv_config, self.bank, meta)

    def save(self, path: Path | None = None) -> Path:
        path = path or self.last_path
        # the whole run's history (~1 KB a record), so a shipped bundle carries its training log
        self.bundle().save(path, {"history": self.history})
        state = {"optimizer": self.opt.state_dict(), "step": self.step_count,
                 "rng": self.gen.get_state()}  # fmt: skip
        torch.save(state, path.with_suffix(".train.pt"))
        return path

    def resume(self, path: Path | None = None) -> bool:
        """Load network, bank, optimiser and step from ``path`` (default: last); False if none."""
        from engines.model import load_model

        path = path or self.last_path
        if not path.is_file():
            return False
        b = load_model(path)
        if b.metadata.get("body_model_hash") != body_model_hash(self.body):
            raise ValueError(f"{path} was trained on a different body model")
        missing, unexpected = self.net.load_state_dict(b.net.state_dict(), strict=False)
        added = [k for k in missing if not k.startswith("pose_mlp.")]
        if unexpected or added:
            raise ValueError(f"{path} does not fit the configured network: missing {added}, "
                             f"unexpected {unexpected}")  # fmt: skip
        self.bank.load_state_dict(b.bank.state_dict())
        state_path = path.with_suffix(".train.pt")
        # a head added since (featnet.pose_mlp, initialised near zero): the optimiser starts afresh
        if state_path.is_file() and not missing:
            state = torch.load(state_path, weights_only=True, map_location=self.device)
            self.opt.load_state_dict(state["optimizer"])
            self.step_count = int(state["step"])
            self.gen.set_state(state["rng"].cpu())
        else:  # a shipped bundle: weights and bank only; the optimiser starts afresh
            self.step_count = int(b.metadata.get("step", 0))
        self.history = list(b.metadata.get("history", []))
        return True

    # ----------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.net.eval()
        terms: dict[str, list[float]] = {}
        preds, gts = [], []
        loader = _loader(self.val_set, self.cfg.__class__(**{**self.cfg.to_dict(), "workers": 0}),
                         shuffle=False, seed=0)  # fmt: skip
        for i, batch in enumerate(loader):
            if i >= self.cfg.val_batches:
                break
            batch = to_device(batch, self.device)
            so = step(self.net, self.body, self.nbv, self.bank, batch, self.weights,
                      update_bank=False, generator=torch.Generator().manual_seed(i),
                      pool_slots=self.cfg.pool_slots,
                      pool_min_weight=self.cfg.pool_min_weight)  # fmt: skip
            for k, v in so.terms.items():
                terms.setdefault(k, []).append(v)
            terms.setdefault("kernel_top1", []).append(so.top1)
            p, g = evaluate_regression(self.net, self.body, batch)
            preds.append(p)
            gts.append(g)
        self.net.train()
        res = {f"val_{k}": float(np.nanmean(v)) for k, v in terms.items()}
        if preds:
            p, g = np.concatenate(preds), np.concatenate(gts)
            res["val_mpjpe"] = mpjpe(p, g)
            res["val_pa_mpjpe"] = pa_mpjpe(p, g)
        return res

    # ----------------------------------------------------------------- loop
    def train_step(self, batch: dict[str, torch.Tensor]) -> StepOutputs:
        """One optimiser step on ``batch`` (losses, bank update, backward, clipping, Adam at the
        scheduled learning rate); advances ``step_count``."""
        cfg = self.cfg
        batch = to_device(batch, self.device)
        so = step(
            self.net, self.body, self.nbv, self.bank, batch, self.weights,
            cfg.contrastive_weight, cfg.background_weight, cfg.clutter_per_image,
            generator=self.gen, pool_slots=cfg.pool_slots, pool_min_weight=cfg.pool_min_weight,
            max_targets=cfg.max_targets, occluder_clutter=cfg.occluder_clutter,
        )  # fmt: skip
        if not math.isfinite(so.terms["total"]):
            raise FloatingPointError(f"non-finite loss at step {self.step_count}: {so.terms}")
        for group in self.opt.param_groups:
            group["lr"] = learning_rate(cfg, self.step_count)
        self.opt.zero_grad(set_to_none=True)
        so.total.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 10.0)
        self.opt.step()
        self.step_count += 1
        return so

    def run(self, progress: bool = True) -> list[dict[str, Any]]:
        from tqdm import tqdm

        cfg = self.cfg
        self.net.train()
        loader = _loader(self.train_set, cfg, shuffle=True, seed=cfg.seed + self.step_count,
                         pin_memory=self.device.type == "cuda")  # fmt: skip
        bar = tqdm(total=cfg.steps, initial=self.step_count, disable=not progress,
                   desc="train", unit="step", dynamic_ncols=True)  # fmt: skip
        it = iter(loader)
        t0 = time.time()
        while self.step_count < cfg.steps:
            try:
                batch = next(it)
            except StopIteration:
                it = iter(loader)
                batch = next(it)
            so = self.train_step(batch)
            bar.update(1)
            if self.step_count % cfg.log_every == 0:
                bar.set_postfix(loss=f"{so.terms['total']:.3f}", top1=f"{so.top1:.2f}")
            record = None
            if self.step_count % cfg.val_every == 0 or self.step_count == cfg.steps:
                record = {"step": self.step_count, "time_s": round(time.time() - t0, 1),
                          "train_top1": so.top1, **so.terms, **self.validate()}  # fmt: skip
                self.history.append(record)
                bar.write(json.dumps(record))
            if self.step_count % cfg.checkpoint_every == 0 or self.step_count == cfg.steps:
                self.save()
        bar.close()
        return self.history
