"""A tiny untrained model bundle for the model stages' tests (real code paths, fast)."""

from __future__ import annotations

from pathlib import Path

import torch

from engines.featnet import FeatNetConfig, FeatureNet
from engines.model import ModelBundle
from engines.nbv import NBVConfig
from engines.train.contrastive import BankConfig, FeatureBank

TINY_NET = {
    "input_size": 64, "width": 8, "feature_dim": 16, "head_channels": 16, "smpl_channels": 4,
    "mlp_hidden": 16,
}  # fmt: skip
TINY_KERNELS = 200


def save_tiny_bundle(path: Path, seed: int = 0) -> Path:
    """Write an untrained bundle (S = 64, D = 16, 200 kernels) to ``path``; return it."""
    torch.manual_seed(seed)
    net = FeatureNet(FeatNetConfig.from_dict(TINY_NET)).eval()
    bank = FeatureBank(TINY_KERNELS, 3, TINY_NET["feature_dim"], BankConfig(n_clutter=64), seed)
    return ModelBundle(net, NBVConfig(num_kernels=TINY_KERNELS), bank, {}).save(path)
