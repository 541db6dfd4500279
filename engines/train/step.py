"""One training step's losses: contrastive kernel features + regression (DESIGN.md s5).

A batch is a dict of tensors (see :data:`BATCH_KEYS`), as produced by the synthetic data engine
and stacked along a new first dimension ``B``. Everything geometric is in the crop camera frame
(docs/conventions.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engines.body import BodyModel
from engines.crop import feature_intrinsics
from engines.featnet import FeatureNet
from engines.nbv import NeuralBodyVolume
from engines.render import Camera, pool_features, render
from engines.rotations import axis_angle_to_matrix, rot6d_to_matrix
from engines.skinning import lbs
from engines.train.contrastive import FeatureBank, background_push, info_nce, kernel_top1
from engines.train.regression import RegressionWeights, regression_losses

__all__ = [
    "BATCH_KEYS",
    "KernelTargets",
    "StepOutputs",
    "body_joints_from_rotmats",
    "downsample_labels",
    "feature_camera",
    "kernel_targets",
    "regression_terms",
    "step",
]

#: Keys (and per-sample shapes) a training batch must have.
BATCH_KEYS = {
    "image": "[S, S, 3] uint8 RGB",
    "K": "[3, 3] crop camera",
    "global_orient": "[3]",
    "body_pose": "[69]",
    "betas": "[10]",
    "transl": "[3]",
    "joints3d": "[24, 3] camera frame",
    "joints2d": "[24, 2] crop pixels",
    "part_map": "[S, S] int, 0 = background, 1..24 = SMPL parts",
    "occluder_mask": "[S, S] bool, pixels covered by an occluder",
}


@dataclass
class StepOutputs:
    total: torch.Tensor
    terms: dict[str, float]
    top1: float  # kernel_top1 on this batch (before the bank update)
    n_visible: int


def feature_camera(K: torch.Tensor, stride: int, size: int) -> Camera:  # K: [B, 3, 3]
    """Camera of the stride-``stride`` feature map of an ``size``-pixel crop with intrinsics K
    (``engines.crop.feature_intrinsics``: pixel centres stay at integer coordinates)."""
    Kf = feature_intrinsics(K, stride)
    h = size // stride
    return Camera(fx=Kf[:, 0, 0], fy=Kf[:, 1, 1], cx=Kf[:, 0, 2], cy=Kf[:, 1, 2], width=h, height=h)


def body_joints_from_rotmats(
    body: BodyModel,
    rotmats: torch.Tensor,  # [B, 24, 3, 3]
    betas: torch.Tensor,  # [B, 10]
) -> torch.Tensor:  # -> [B, 24, 3], transl = 0
    """Posed joints for rotation-matrix poses (the regression head's output), no axis-angle."""
    out = lbs(
        betas,
        rotmats,
        body.v_template,
        body.shapedirs,
        body.posedirs,
        None,
        body.parents,
        body.weights,
        vertex_ids=torch.zeros(1, dtype=torch.long, device=betas.device),
        pose2rot=False,
        joint_basis_=(body.J_template, body.J_shapedirs),
    )
    return out.joints


def regression_terms(
    body: BodyModel,
    out: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    weights: RegressionWeights,
    size: int,
    gt_parts: torch.Tensor | None = None,  # [B, h, w] long, 0 = background
) -> dict[str, torch.Tensor]:
    """The regression head's loss terms (:func:`regression_losses`) for network outputs ``out``
    (``pose6d``, ``betas``, ``cam``; ``part_logits`` with ``gt_parts``) against a batch's
    ``K``, ``global_orient``, ``body_pose``, ``betas``, ``joints3d`` and ``joints2d``."""
    B = out["pose6d"].shape[0]
    pred_rot = rot6d_to_matrix(out["pose6d"])  # [B, 24, 3, 3]
    pred_joints = body_joints_from_rotmats(body, pred_rot, out["betas"])
    gt_rot = axis_angle_to_matrix(
        torch.cat([targets["global_orient"], targets["body_pose"]], 1).float().reshape(B, 24, 3)
    )
    body_joints = None
    if weights.joints3d_body > 0:  # predicted body pose under the true global orientation
        body_rot = torch.cat([gt_rot[:, :1], pred_rot[:, 1:]], 1)
        body_joints = body_joints_from_rotmats(body, body_rot, out["betas"])
    return regression_losses(
        pred_rot, out["betas"], out["cam"], pred_joints, gt_rot, targets["betas"].float(),
        targets["joints3d"].float(), targets["joints2d"].float(), targets["K"].float(), size,
        weights, out.get("part_logits") if gt_parts is not None else None, gt_parts,
        body_joints=body_joints,
    )  # fmt: skip


def downsample_labels(x: torch.Tensor, stride: int) -> torch.Tensor:  # [B, S, S] -> [B, h, w]
    """Per-pixel labels at the stride-``stride`` feature map's pixel centres."""
    return x[:, stride // 2 :: stride, stride // 2 :: stride]


@dataclass
class KernelTargets:
    """Image features pooled onto the kernels visible in a render of the true pose."""

    feats: torch.Tensor  # [N, D] unit pooled features, one per visible (image, kernel)
    rows: torch.Tensor  # [N] bank row (kernel, orientation bin) of each
    kernels: torch.Tensor  # [N] kernel index of each
    background: torch.Tensor  # [B, h, w] bool, pixels off the body or on an occluder
    on_body: torch.Tensor  # [B, h, w] bool, occluder pixels where the body would be


def kernel_targets(
    body: BodyModel,
    nbv: NeuralBodyVolume,
    bank: FeatureBank,
    batch: dict[str, torch.Tensor],
    feats: torch.Tensor,  # [B, D, h, w] the network's features of batch["image"]
    pool_slots: int = 10,
    pool_min_weight: float = 0.1,
) -> KernelTargets:
    """Pool ``feats`` onto the kernels with the weights of a ``pool_slots``-slot render of the
    batch's true pose (occluded pixels weigh nothing); a kernel is visible when its weights sum
    above ``pool_min_weight`` (see :func:`step`). Gradients flow into ``feats``."""
    S = batch["image"].shape[1]
    stride = S // feats.shape[-1]
    with torch.no_grad():
        centres, joints = nbv.pose(
            body, batch["global_orient"].float(), batch["body_pose"].float(),
            batch["betas"].float(), batch["transl"].float(),
        )  # fmt: skip
        r = render(centres, feature_camera(batch["K"].float(), stride, S), M=pool_slots)
        occ = downsample_labels(batch["occluder_mask"].bool(), stride)  # [B, h, w]
        r.weights = r.weights * (~occ)[..., None]
        bins = nbv.orientation_labels(joints)  # [B, K]
    pooled, wsum = pool_features(r, feats)  # [B, K, D], [B, K]
    visible = wsum > max(pool_min_weight, 1e-3)  # with M = 1 these are front-slot kernels
    bi, ki = visible.nonzero(as_tuple=True)
    return KernelTargets(
        feats=F.normalize(pooled[bi, ki], dim=-1),
        rows=bank.row_index(ki, bins[bi, ki]),
        kernels=ki,
        background=~r.mask | occ,
        on_body=occ & r.mask,
    )


def _sample(mask: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """Up to ``n`` flat indices of ``mask``'s true pixels, drawn without replacement."""
    idx = mask.flatten().nonzero().squeeze(1)
    return idx[torch.randperm(idx.numel(), generator=generator, device=idx.device)[:n]]


def step(
    net: FeatureNet,
    body: BodyModel,
    nbv: NeuralBodyVolume,
    bank: FeatureBank,
    batch: dict[str, torch.Tensor],
    weights: RegressionWeights,
    contrastive_weight: float = 1.0,
    background_weight: float = 1.0,
    clutter_per_image: int = 10,
    update_bank: bool = True,
    generator: torch.Generator | None = None,
    pool_slots: int = 10,
    pool_min_weight: float = 0.1,
    max_targets: int = 0,
    occluder_clutter: float = 0.0,
) -> StepOutputs:
    """Losses of one batch; updates the bank (EMA rows, clutter FIFO) after scoring.

    Kernel targets: the image features are pooled onto the kernels with the weights of a render
    of the true pose with ``pool_slots`` slots per pixel (the fitter renders with M = 10, so a
    kernel's row becomes the weighted mean of the pixel features it is rendered into), and a
    kernel counts as visible when its weights sum to more than ``pool_min_weight`` pixels. With
    M = 1 (the released code's choice), at 48x48 maps and A = 4000 (sigma ~1.1 cm, pixels ~4.5
    cm on the body) only ~25 kernels per image got a weight above 1e-3 (the front slot is the
    nearest candidate by depth, usually a grazing one); M = 10 gives ~340 of the ~430 kernels
    a view shows, 14x more targets per image, and trains the features the fitter compares.

    ``max_targets`` > 0 scores InfoNCE on a random subset of at most that many targets (drawn
    with ``generator``), and ``top1`` is measured on that subset; the bank is still updated
    with all of them. At batch 16 the ~5,400 targets x ~4,700 logits made the loss as costly
    as the network's forward and backward (``python -m benchmarks.train``); neighbouring
    kernels of one image give strongly correlated gradients, so a subset loses little.

    Clutter samples: ``clutter_per_image`` feature pixels per image, drawn from the background
    (outside the truth's coverage mask) and the occluder. ``occluder_clutter`` > 0 draws that
    share of them from occluder pixels inside the coverage mask (where the occluder hides the
    body), when the image has any: drawn uniformly, they are a few percent of the picks, and
    the network then gives occluders on the body body-like features that the robust
    likelihood cannot explain as clutter.
    """
    if pool_slots < 1:
        raise ValueError(f"pool_slots must be >= 1, got {pool_slots}")
    if not pool_min_weight >= 0:
        raise ValueError(f"pool_min_weight must be >= 0, got {pool_min_weight}")
    if max_targets < 0:
        raise ValueError(f"max_targets must be >= 0 (0 = all), got {max_targets}")
    if not 0.0 <= occluder_clutter <= 1.0:
        raise ValueError(f"occluder_clutter must be in [0, 1], got {occluder_clutter}")
    missing = set(BATCH_KEYS) - set(batch)
    if missing:
        raise ValueError(f"batch is missing keys {sorted(missing)}")
    from engines.featnet import normalize_images

    images = normalize_images(batch["image"])  # a channels-last net makes its outputs NHWC
    B, _, S, _ = images.shape
    out = net(images)
    feats = out["features"]  # [B, D, h, w]
    stride = S // feats.shape[-1]

    # --- contrastive: pool features onto visible kernels with the M-slot render of the truth
    t = kernel_targets(body, nbv, bank, batch, feats, pool_slots, pool_min_weight)
    vfeat, rows, ki, background, on_body = t.feats, t.rows, t.kernels, t.background, t.on_body
    sub = slice(None)
    if 0 < max_targets < vfeat.shape[0]:
        sub = torch.randperm(vfeat.shape[0], generator=generator)[:max_targets]
    loss_con = info_nce(vfeat[sub], rows[sub], ki[sub], bank, nbv.adjacency)
    top1 = kernel_top1(vfeat[sub].detach(), ki[sub], bank, nbv.adjacency)

    # background pixels: a few per image, away from the body and on occluders
    fmap = feats.permute(0, 2, 3, 1)  # [B, h, w, D]
    picks = []
    n_occ = round(occluder_clutter * clutter_per_image)
    for b in range(B):
        sel = _sample(on_body[b], n_occ, generator) if n_occ else on_body.new_zeros(0).long()
        rest = background[b] & ~on_body[b] if sel.numel() else background[b]
        sel = torch.cat([sel, _sample(rest, clutter_per_image - sel.numel(), generator)])
        if sel.numel():
            picks.append(fmap[b].reshape(-1, fmap.shape[-1])[sel])
    bg = torch.cat(picks) if picks else fmap.new_zeros(0, fmap.shape[-1])
    loss_bg = background_push(bg, bank)

    # --- regression
    reg = regression_terms(
        body, out, batch, weights, S, downsample_labels(batch["part_map"].long(), stride)
    )
    total = contrastive_weight * loss_con + background_weight * loss_bg + reg["total"]
    if update_bank:
        bank.update(vfeat.detach(), rows)
        bank.push_clutter(bg.detach())
    terms = {k: float(v.detach()) for k, v in reg.items() if k != "total"}
    terms.update(
        contrastive=float(loss_con.detach()),
        background=float(loss_bg.detach()),
        total=float(total.detach()),
    )
    return StepOutputs(total, terms, top1, int(vfeat.shape[0]))
