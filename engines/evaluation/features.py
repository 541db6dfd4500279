"""Quality of the learned kernel features on held-out images (``kernel_top1``).

The fraction of visible kernels whose pooled image feature has its nearest feature-bank row
(any orientation bin) at that kernel or one of its 1-ring neighbours. Images come from the
synthetic "eval" split (holdout motion takes, held-out textures and backgrounds; or "val"),
unoccluded.

Visible kernels and their features come from a render of the true pose with ``pool_slots``
slots per pixel (``engines.train.step``): with M = 10 (the fitter's render, the default) a
kernel is visible when its render weights sum above ``pool_min_weight`` (~340 kernels per view);
with M = 1 (the released code's training targets) only kernels in a pixel's front slot with
weight count (~25 per view at 48x48 maps), a small and easier subset.
"""

from __future__ import annotations

import torch

from engines.body import BodyModel
from engines.evaluation.samples import check_eval_split
from engines.model import ModelBundle

__all__ = ["kernel_top1_eval"]


@torch.no_grad()
def kernel_top1_eval(
    bundle: ModelBundle,
    n: int = 64,
    seed: int = 0,
    batch: int = 16,
    pool_slots: int = 10,
    pool_min_weight: float = 0.1,
    split: str = "eval",  # or "val" (the validation takes: for choosing settings)
) -> float:
    from engines.synth.dataset import SynthConfig, SynthDataset
    from engines.train.regression import RegressionWeights
    from engines.train.step import step
    from engines.train.trainer import collate

    body = BodyModel.default()
    nbv = bundle.build_nbv(body)
    cfg = SynthConfig(crop_size=bundle.net.config.input_size, seed=seed, occlusion_prob=0.0,
                      truncation_prob=0.0)  # fmt: skip
    check_eval_split(split)
    ds = SynthDataset(cfg, split)
    hits, total = 0.0, 0
    for i in range(0, n, batch):
        b = collate([ds[j] for j in range(i, min(n, i + batch))])
        so = step(bundle.net.eval(), body, nbv, bundle.bank, b, RegressionWeights(),
                  update_bank=False, pool_slots=pool_slots,
                  pool_min_weight=pool_min_weight)  # fmt: skip
        hits += so.top1 * so.n_visible
        total += so.n_visible
    return hits / max(total, 1)
