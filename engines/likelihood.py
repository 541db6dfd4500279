"""Feature likelihoods of a rendered Neural Body Volume against an image's features (DESIGN.md s3).

Both are losses to minimise, one value per body:

- plain: ``L = 1 - mean_p[mask(p) obj(p) + (1 - mask(p)) clu(p)]``;
- occlusion-robust: with ``a = clamp((obj + 1) / 2, 1e-8, 1)`` and ``b = (clu + 1) / 2``, a soft
  per-pixel max at temperature 0.1, ``m = a sa + b sb`` with ``(sa, sb) = softmax(a/0.1, b/0.1)``,
  and ``L = mean_p (1 - m)``.

``obj(p) = sum_o pi_o(p) cos(Phi_o(p), F(p))`` is the expected cosine between the rendered
orientation-specific kernel feature and the image feature, and ``clu(p) = cos(F(p), c)`` scores the
clutter (background) direction ``c``; with a mixture of clutter directions ``c_1..c_N`` (the
released code's optional vMF mixture of clutter centres), ``clu(p) = max_n cos(F(p), c_n)``.
Pixels inside the coverage mask where clutter explains the feature better than the body
(``b > a``) form the occlusion map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

__all__ = [
    "LikelihoodOutput",
    "clutter_score",
    "feature_likelihood",
    "feature_likelihood_from_cos",
    "orientation_pi",
    "part_likelihood",
]

_EPS = 1e-8


@dataclass
class LikelihoodOutput:
    loss: torch.Tensor  # [B] to minimise
    obj: torch.Tensor  # [B, H, W] body score (0 outside the render)
    clu: torch.Tensor  # [B, H, W] clutter score
    occluded: torch.Tensor  # [B, H, W] bool: support pixels better explained by clutter
    occluded_fraction: torch.Tensor  # [B] share of support pixels that are occluded


def orientation_pi(
    orient: torch.Tensor,  # [B, O, H, W] rendered soft bin weights
    mode: Literal["softmax", "normalize"] = "normalize",
) -> torch.Tensor:  # -> [B, O, H, W]
    """Per-pixel bin probabilities. ``softmax`` is the released code's choice (flagged by its
    authors as a possible bug: it flattens the weights); ``normalize`` divides by their sum."""
    if mode == "softmax":
        return torch.softmax(orient, dim=1)
    if mode == "normalize":
        s = orient.sum(dim=1, keepdim=True)
        uniform = torch.full_like(orient, 1.0 / orient.shape[1])
        return torch.where(s > _EPS, orient / s.clamp(min=_EPS), uniform)
    raise ValueError(f"mode must be 'softmax' or 'normalize', got {mode!r}")


def _check(features, rendered, orient, mask, clutter) -> tuple[int, int]:
    if features.ndim != 4:
        raise ValueError(f"features must be [B, C, H, W], got {tuple(features.shape)}")
    b, c, h, w = features.shape
    if orient.ndim != 4 or orient.shape[0] != b or orient.shape[2:] != (h, w):
        raise ValueError(
            f"orient must be [B, O, H, W] = [{b}, O, {h}, {w}], got {tuple(orient.shape)}"
        )
    o = orient.shape[1]
    if rendered.shape != (b, o * c, h, w):
        raise ValueError(
            f"rendered must be [B, O*C, H, W] = {(b, o * c, h, w)}, got {tuple(rendered.shape)}"
        )
    if mask.shape != (b, h, w):
        raise ValueError(f"mask must be [B, H, W] = {(b, h, w)}, got {tuple(mask.shape)}")
    _check_clutter(clutter, c)
    return o, c


def _check_clutter(clutter: torch.Tensor, c: int) -> None:
    if not (clutter.shape == (c,) or (clutter.ndim == 2 and clutter.shape[1] == c
                                      and clutter.shape[0] >= 1)):  # fmt: skip
        raise ValueError(f"clutter must be [C] or [N, C] with C = {c}, got {tuple(clutter.shape)}")


def clutter_score(
    features: torch.Tensor,  # [B, C, H, W] unit features
    clutter: torch.Tensor,  # [C] or [N, C] unit clutter direction(s)
) -> torch.Tensor:  # -> [B, H, W] clu(p): best cosine with a clutter direction
    if clutter.ndim == 1:
        return torch.einsum("bchw,c->bhw", features, clutter)
    return torch.einsum("bchw,nc->bnhw", features, clutter).amax(dim=1)


def feature_likelihood(
    features: torch.Tensor,  # [B, C, H, W] unit image features
    rendered: torch.Tensor,  # [B, O*C, H, W] rendered kernel features, bins stacked
    orient: torch.Tensor,  # [B, O, H, W] rendered soft orientation weights
    mask: torch.Tensor,  # [B, H, W] coverage mask (bool or {0, 1})
    clutter: torch.Tensor,  # [C] or [N, C] unit clutter direction(s)
    robust: bool = True,
    orient_mode: Literal["softmax", "normalize"] = "normalize",
    temperature: float = 0.1,
    support: torch.Tensor | None = None,  # [B, H, W] bool body pixels for the occlusion map
) -> LikelihoodOutput:
    """Likelihood loss per body. The occlusion map and fraction are counted on ``support``
    (default: the coverage mask, which is the silhouette dilated by the kernel footprint; pass
    e.g. ``silhouette > 0.5`` to count only pixels the body itself covers)."""
    o, c = _check(features, rendered, orient, mask, clutter)
    b, _, h, w = features.shape
    phi = rendered.reshape(b, o, c, h, w)
    dot = (phi * features[:, None]).sum(dim=2)  # [B, O, H, W]
    cos = dot / torch.linalg.vector_norm(phi, dim=2).clamp_min(_EPS)  # cos(normalize(phi), F)
    return _from_cos(
        features, cos, orient, mask, clutter, robust, orient_mode, temperature, support
    )


def feature_likelihood_from_cos(
    features: torch.Tensor,  # [B, C, H, W] unit image features
    cos: torch.Tensor,  # [B, O, H, W] cos(Phi_o(p), F(p)), e.g. engines.render.render_cosine
    orient: torch.Tensor,  # [B, O, H, W] rendered soft orientation weights
    mask: torch.Tensor,  # [B, H, W] coverage mask (bool or {0, 1})
    clutter: torch.Tensor,  # [C] or [N, C] unit clutter direction(s)
    robust: bool = True,
    orient_mode: Literal["softmax", "normalize"] = "normalize",
    temperature: float = 0.1,
    support: torch.Tensor | None = None,  # [B, H, W] bool body pixels for the occlusion map
) -> LikelihoodOutput:
    """``feature_likelihood`` from the per-bin cosine map instead of the rendered features."""
    if features.ndim != 4:
        raise ValueError(f"features must be [B, C, H, W], got {tuple(features.shape)}")
    b, c, h, w = features.shape
    if orient.ndim != 4 or orient.shape[0] != b or orient.shape[2:] != (h, w):
        raise ValueError(
            f"orient must be [B, O, H, W] = [{b}, O, {h}, {w}], got {tuple(orient.shape)}"
        )
    if cos.shape != orient.shape:
        raise ValueError(
            f"cos must be [B, O, H, W] = {tuple(orient.shape)}, got {tuple(cos.shape)}"
        )
    if mask.shape != (b, h, w):
        raise ValueError(f"mask must be [B, H, W] = {(b, h, w)}, got {tuple(mask.shape)}")
    _check_clutter(clutter, c)
    return _from_cos(
        features, cos, orient, mask, clutter, robust, orient_mode, temperature, support
    )


def _from_cos(
    features, cos, orient, mask, clutter, robust, orient_mode, temperature, support
) -> LikelihoodOutput:
    if support is None:
        support = mask
    elif support.shape != mask.shape:
        raise ValueError(
            f"support must be [B, H, W] = {tuple(mask.shape)}, got {tuple(support.shape)}"
        )
    obj = (orientation_pi(orient, orient_mode) * cos).sum(dim=1)  # [B, H, W]
    clu = clutter_score(features, clutter).detach()
    maskf = mask.to(features.dtype)
    a = ((obj + 1) / 2).clamp(_EPS, 1.0)
    bb = (clu + 1) / 2
    if robust:
        sa, sb = torch.softmax(torch.stack([a, bb]) / temperature, dim=0)
        loss = (1 - (a * sa + bb * sb)).mean(dim=(1, 2))
    else:
        loss = 1 - (maskf * obj + (1 - maskf) * clu).mean(dim=(1, 2))
    occluded = (bb > a) & support.bool()
    covered = support.bool().sum(dim=(1, 2)).clamp(min=1)
    frac = occluded.sum(dim=(1, 2)) / covered
    return LikelihoodOutput(loss, obj, clu, occluded.detach(), frac.detach())


def part_likelihood(
    idx: torch.Tensor,  # [B, H, W, M] kernel index per render slot, -1 for an empty slot
    weights: torch.Tensor,  # [B, H, W, M] render weights
    labels: torch.Tensor,  # [K] long part label of each kernel, 1..P-1 (0 is background)
    log_probs: torch.Tensor,  # [B, P, H, W] log-probabilities of the network's part head
) -> torch.Tensor:  # -> [B] loss (lower: the part head agrees with the render)
    """Minus the mean log-probability, under the part head, of the part labels the body renders:
    ``L = -sum_p sum_m w_pm log p_p(l_m) / sum_p sum_m w_pm`` over the render's slots.

    A body turned front to back swaps its left and right parts in the image, which the feature
    likelihood tells apart poorly (the fitter uses this to choose between its hypotheses). The
    part head is trained on the unoccluded (amodal) part map, so occluders are not contradicted.
    """
    if idx.ndim != 4 or weights.shape != idx.shape:
        raise ValueError(f"idx and weights must be [B, H, W, M], got {tuple(idx.shape)}, "
                         f"{tuple(weights.shape)}")  # fmt: skip
    b, h, w, _ = idx.shape
    if log_probs.ndim != 4 or log_probs.shape[0] != b or log_probs.shape[2:] != (h, w):
        raise ValueError(
            f"log_probs must be [B, P, H, W] = [{b}, P, {h}, {w}], got {tuple(log_probs.shape)}"
        )
    lab = torch.where(idx >= 0, labels[idx.clamp(min=0)], 0)  # [B, H, W, M]
    lp = torch.gather(log_probs.detach().permute(0, 2, 3, 1), 3, lab)  # [B, H, W, M]
    wsum = weights.sum(dim=(1, 2, 3)).clamp(min=_EPS)
    return -(weights * lp).sum(dim=(1, 2, 3)) / wsum
