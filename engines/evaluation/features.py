"""Quality of the learned kernel features on held-out images (``kernel_top1``).

The fraction of visible kernels whose pooled image feature has its nearest feature-bank row
(any orientation bin) at that kernel or one of its 1-ring neighbours. Images come from the
synthetic "eval" split (holdout motion takes, held-out textures and backgrounds), unoccluded.
"""

from __future__ import annotations

import torch

from engines.body import BodyModel
from engines.model import ModelBundle

__all__ = ["kernel_top1_eval"]


@torch.no_grad()
def kernel_top1_eval(bundle: ModelBundle, n: int = 64, seed: int = 0, batch: int = 16) -> float:
    from engines.synth.dataset import SynthConfig, SynthDataset
    from engines.train.regression import RegressionWeights
    from engines.train.step import step
    from engines.train.trainer import collate

    body = BodyModel.default()
    nbv = bundle.build_nbv(body)
    cfg = SynthConfig(crop_size=bundle.net.config.input_size, seed=seed, occlusion_prob=0.0,
                      truncation_prob=0.0)  # fmt: skip
    ds = SynthDataset(cfg, "eval")
    hits, total = 0.0, 0
    for i in range(0, n, batch):
        b = collate([ds[j] for j in range(i, min(n, i + batch))])
        so = step(bundle.net.eval(), body, nbv, bundle.bank, b, RegressionWeights(),
                  update_bank=False)  # fmt: skip
        hits += so.top1 * so.n_visible
        total += so.n_visible
    return hits / max(total, 1)
