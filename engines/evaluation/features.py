"""Quality of the learned kernel features (``kernel_top1``) and of the part head
(``part_eval``) on held-out images.

The fraction of visible kernels whose pooled image feature has its nearest feature-bank row
(any orientation bin) at that kernel or one of its 1-ring neighbours. Images come from the
synthetic "eval" split (holdout motion takes, held-out textures and backgrounds; or "val"),
unoccluded.

Visible kernels and their features come from a render of the true pose with ``pool_slots``
slots per pixel (``engines.train.step``): with M = 10 (the fitter's render, the default) a
kernel is visible when its render weights sum above ``pool_min_weight`` (~340 kernels per view);
with M = 1 (the released code's training targets) only kernels in a pixel's front slot with
weight count (~25 per view at 48x48 maps), a small and easier subset.

``part_eval`` scores the part head on the same kind of images, at the feature resolution, on
the body's pixels: ``part_top1`` the share whose most likely part is the true one, and
``part_lr_swap`` the share of pixels of left or right parts that the head gives the mirror
part (``engines.mirror.MIRROR_JOINTS``). A body seen from behind shows its left and right parts
swapped, so the swap rate is what misleads the cold start's front/back choice.
"""

from __future__ import annotations

import torch

from engines.body import BodyModel
from engines.evaluation.samples import check_eval_split
from engines.model import ModelBundle

__all__ = ["kernel_top1_eval", "part_eval"]


def _heldout_batches(
    bundle: ModelBundle, n: int, seed: int, batch: int, split: str, occlusion_prob: float = 0.0
):
    """``n`` held-out synthetic samples of the bundle's crop size, collated ``batch`` at a time
    (no truncation; occluders on a share ``occlusion_prob`` of them)."""
    from engines.synth.dataset import SynthConfig, SynthDataset
    from engines.train.trainer import collate

    check_eval_split(split)
    cfg = SynthConfig(crop_size=bundle.net.config.input_size, seed=seed,
                      occlusion_prob=occlusion_prob, truncation_prob=0.0)  # fmt: skip
    ds = SynthDataset(cfg, split)
    for i in range(0, n, batch):
        yield collate([ds[j] for j in range(i, min(n, i + batch))])


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
    from engines.train.regression import RegressionWeights
    from engines.train.step import step

    body = BodyModel.default()
    nbv = bundle.build_nbv(body)
    hits, total = 0.0, 0
    for b in _heldout_batches(bundle, n, seed, batch, split):
        so = step(bundle.net.eval(), body, nbv, bundle.bank, b, RegressionWeights(),
                  update_bank=False, pool_slots=pool_slots,
                  pool_min_weight=pool_min_weight)  # fmt: skip
        hits += so.top1 * so.n_visible
        total += so.n_visible
    return hits / max(total, 1)


@torch.no_grad()
def part_eval(
    bundle: ModelBundle,
    n: int = 64,
    seed: int = 0,
    batch: int = 16,
    split: str = "eval",  # or "val"
    occlusion_prob: float = 0.0,  # share of images with the training data's occluders
) -> dict[str, float]:
    """``{"part_top1": ..., "part_lr_swap": ...}`` over ``n`` held-out images (unoccluded by
    default), on the body's pixels that no occluder covers."""
    from engines.featnet import normalize_images
    from engines.mirror import MIRROR_JOINTS
    from engines.train.step import downsample_labels

    mirror = torch.tensor([0, *[j + 1 for j in MIRROR_JOINTS]])  # [25] label -> mirror label
    net = bundle.net.eval()
    hit = swap = body_px = side_px = 0
    for b in _heldout_batches(bundle, n, seed, batch, split, occlusion_prob):
        logits = net(normalize_images(b["image"]))["part_logits"]  # [B, 25, h, w]
        stride = b["part_map"].shape[-1] // logits.shape[-1]
        truth = downsample_labels(b["part_map"].long(), stride)  # [B, h, w]
        hidden = downsample_labels(b["occluder_mask"].bool(), stride)
        pred = logits.argmax(1)
        on = (truth > 0) & ~hidden
        side = on & (mirror[truth] != truth)  # left or right parts
        hit += int((pred == truth)[on].sum())
        swap += int((pred == mirror[truth])[side].sum())
        body_px += int(on.sum())
        side_px += int(side.sum())
    return {"part_top1": hit / max(body_px, 1), "part_lr_swap": swap / max(side_px, 1)}
