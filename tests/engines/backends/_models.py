"""Test helpers: a small FeatureNet with non-trivial weights (BatchNorm statistics too)."""

from __future__ import annotations

import torch

from engines.featnet import FeatNetConfig, FeatureNet

SMALL = FeatNetConfig(input_size=64, width=8, feature_dim=16, head_channels=16, smpl_channels=4)


def randomized(config: FeatNetConfig = SMALL, seed: int = 0) -> FeatureNet:
    """A FeatureNet whose BatchNorm statistics/affines are random too (eval mode)."""
    torch.manual_seed(seed)
    model = FeatureNet(config)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
        model.pose_weight.normal_(0.0, 0.05, generator=g)
    return model.eval()
