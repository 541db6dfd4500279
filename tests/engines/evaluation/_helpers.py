"""Shared test pieces: a tiny untrained model bundle and a programmatic motion take."""

from __future__ import annotations

from pathlib import Path

import torch

from engines.body import BodyModel
from engines.featnet import FeatNetConfig, FeatureNet
from engines.model import ModelBundle
from engines.nbv import NBVConfig, NeuralBodyVolume
from engines.synth.poses import PoseSequence, TakeBank
from engines.train.contrastive import BankConfig, FeatureBank

S = 64


def tiny_bundle(body: BodyModel, seed: int = 0) -> ModelBundle:
    torch.manual_seed(seed)
    cfg = FeatNetConfig(input_size=S, width=8, feature_dim=16, head_channels=16, smpl_channels=4,
                        mlp_hidden=16)  # fmt: skip
    nbv_cfg = NBVConfig(num_kernels=120)
    nbv = NeuralBodyVolume(body, nbv_cfg)
    bank = FeatureBank(nbv.num_kernels, nbv.num_bins, cfg.feature_dim, BankConfig(n_clutter=32))
    return ModelBundle(FeatureNet(cfg).eval(), nbv_cfg, bank, {"test": True})


def walk_loader(path: Path) -> PoseSequence:
    """A short arm-swinging walk along x (world frame, y up), 30 fps."""
    T = 30
    t = torch.arange(T, dtype=torch.float32)
    pose = torch.zeros(T, 69)
    pose[:, 47] = -1.2 + 0.3 * torch.sin(t / 4)  # left shoulder z (arm down)
    pose[:, 50] = 1.2 - 0.3 * torch.sin(t / 4)  # right shoulder z
    pose[:, 0] = 0.3 * torch.sin(t / 4)  # left hip x
    pose[:, 3] = -0.3 * torch.sin(t / 4)  # right hip x
    transl = torch.stack([0.03 * t, torch.full((T,), 0.95), torch.zeros(T)], dim=1)
    return PoseSequence(Path(path).name, torch.zeros(T, 3), pose, transl, 30.0)


def walk_takes() -> TakeBank:
    return TakeBank([Path("walk_a.bvh")], loader=walk_loader)
