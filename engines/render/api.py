"""Public entry points of the NBV renderer: ``render``, ``render_features``, ``pool_features``."""

from __future__ import annotations

import torch

from .common import (
    DEFAULT_PRECISION,
    Camera,
    RenderOutput,
    check_camera,
    check_centres,
    check_precision,
    check_slots,
)
from .fast import cosine_fast, features_fast, render_fast
from .reference import render_reference

__all__ = ["COSINE_EPS", "pool_features", "render", "render_cosine", "render_features"]

#: ``render_cosine`` divides by max(|Phi_o(p)|, COSINE_EPS) (as engines.likelihood did).
COSINE_EPS = 1e-8

_IMPLS = {"fast": render_fast, "reference": render_reference}


def render(
    centres: torch.Tensor,  # [B, K, 3]
    camera: Camera,
    precision: float | torch.Tensor = DEFAULT_PRECISION,  # float or [K]
    M: int = 10,
    impl: str = "auto",
) -> RenderOutput:
    """Render kernel lists and weights of K isotropic Gaussians (A_k = precision_k I, m^-2).

    ``centres`` are kernel centres in camera coordinates (metres, docs/conventions.md). Per pixel
    the ``M`` nearest candidate kernels are kept front to back. ``impl`` "fast" (culled, C++,
    CPU) or "reference" (dense plain torch, any device); both give the same values and gradients
    w.r.t. ``centres``. "auto" takes "fast" for CPU tensors and "reference" elsewhere: on a GPU
    the dense, fully vectorised form is the CUDA path (B x H*W x K pairs in a few kernels).
    ``precision`` is a constant (no gradient).
    """
    check_centres(centres)
    check_camera(camera, centres.shape[0])
    check_slots(M)
    prec = check_precision(precision, centres)
    if impl == "auto":
        impl = "fast" if centres.device.type == "cpu" else "reference"
    if impl not in _IMPLS:
        raise ValueError(f"impl must be auto or one of {sorted(_IMPLS)}, got {impl!r}")
    if impl == "fast" and centres.device.type != "cpu":
        raise ValueError("render(impl='fast') runs on CPU tensors; use 'auto' or 'reference'")
    return _IMPLS[impl](centres, camera, prec, M)


def _check_output(out: RenderOutput) -> None:
    if not isinstance(out, RenderOutput):
        raise ValueError(f"out must be a RenderOutput, got {type(out).__name__}")


def render_features(out: RenderOutput, table: torch.Tensor) -> torch.Tensor:  # -> [B, C, H, W]
    """Feature map Phi(p) = sum_m w_m(p) table[k_m]; ``table`` is ``[K, C]`` or ``[B, K, C]``.

    Used for kernel feature tables and for per-kernel orientation weights ``[B, K, O]``.
    Differentiable w.r.t. the render weights and the table.
    """
    _check_output(out)
    B = out.idx.shape[0]
    K = out.num_kernels
    if not isinstance(table, torch.Tensor) or table.dim() not in (2, 3):
        raise ValueError(f"table must be a tensor [K, C] or [B, K, C] with K = {K}, B = {B}")
    if table.shape[-2] != K or (table.dim() == 3 and table.shape[0] != B):
        raise ValueError(
            f"table must have shape [K, C] = [{K}, C] or [B, K, C] = [{B}, {K}, C], "
            f"got {tuple(table.shape)}"
        )
    if not table.is_floating_point():
        raise ValueError("table must be a float tensor [K, C] or [B, K, C]")
    C = table.shape[-1]
    w = out.weights.to(table.dtype)
    if out.impl == "reference":  # literal gather and sum
        idx = out.idx.clamp(min=0)  # empty slots have weight 0
        tb = table if table.dim() == 3 else table.expand(B, K, C)
        g = torch.stack([tb[b][idx[b]] for b in range(B)])  # [B, H, W, M, C]
        feat = (w[..., None] * g).sum(-2)  # [B, H, W, C]
        return feat.permute(0, 3, 1, 2)
    tb = table if table.dim() == 3 else table[None]
    return features_fast(out.idx, w, tb)  # C++ (fast renders are on the CPU)


def pool_features(
    out: RenderOutput,
    feature_map: torch.Tensor,  # [B, C, H, W]
) -> tuple[torch.Tensor, torch.Tensor]:  # -> [B, K, C], [B, K]
    """Inverse of ``render_features``: pool an image's features onto kernels with the weights.

    phi_k = sum_p w_{p,k} F(p) / (sum_p w_{p,k} + 1e-8); returns (phi [B, K, C], sum_p w [B, K]).
    Kernels that reach no pixel get phi = 0 and weight sum 0.
    """
    _check_output(out)
    B, H, W, M = out.idx.shape
    K = out.num_kernels
    if (
        not isinstance(feature_map, torch.Tensor)
        or feature_map.dim() != 4
        or feature_map.shape[0] != B
        or feature_map.shape[2:] != (H, W)
        or not feature_map.is_floating_point()
    ):
        shape = tuple(feature_map.shape) if isinstance(feature_map, torch.Tensor) else None
        raise ValueError(
            f"feature_map must be a float tensor [B, C, H, W] = [{B}, C, {H}, {W}], got {shape}"
        )
    C = feature_map.shape[1]
    w = out.weights.to(feature_map.dtype)
    feats = feature_map.permute(0, 2, 3, 1).reshape(B * H * W, C)  # [B*P, C]
    if out.impl == "reference":  # dense pixel x kernel weight matrix
        valid = out.idx >= 0
        dense = w.new_zeros(B, H * W, K).scatter_add(
            -1, out.idx.clamp(min=0).reshape(B, H * W, M), (w * valid).reshape(B, H * W, M)
        )  # [B, P, K]
        num = torch.einsum("bpk,bpc->bkc", dense, feats.view(B, H * W, C))
        wsum = dense.sum(1)
    else:  # sparse: only filled slots
        flat = out.idx.reshape(-1)
        sel = (flat >= 0).nonzero().squeeze(1)  # [N]
        batch = sel // (H * W * M)
        rows = flat[sel] + batch * K  # kernel row in [B*K]
        wv = w.reshape(-1)[sel]  # [N]
        src = feats[sel // M] * wv[:, None]  # [N, C]
        num = feats.new_zeros(B * K, C).index_add(0, rows, src).view(B, K, C)
        wsum = w.new_zeros(B * K).index_add(0, rows, wv).view(B, K)
    return num / (wsum[..., None] + 1e-8), wsum


def render_cosine(
    out: RenderOutput,
    table: torch.Tensor,  # [K, O*C] or [B, K, O*C], bins stacked
    features: torch.Tensor,  # [B, C, H, W]
    num_bins: int,
    impl: str | None = None,
) -> torch.Tensor:  # -> [B, O, H, W]
    """Per pixel and bin, cos_o(p) = <Phi_o(p), F(p)> / |Phi_o(p)| with
    Phi_o(p) = sum_m w_m(p) table[k_m(p), o*C:(o+1)*C], the norm clamped below at COSINE_EPS
    (so 0 at pixels with no kernel, without NaN gradients). Equals the cosine of
    ``render_features(out, table)`` reshaped to ``[B, O, C, H, W]`` against ``features``,
    without materialising that map.

    ``impl`` defaults to the render's: "fast" (fused C++, differentiable w.r.t. ``out.weights``
    only: a table or features that require grad raise at backward) or "reference" (plain torch,
    the formula literally, differentiable w.r.t. everything).
    """
    _check_output(out)
    B, H, W, _ = out.idx.shape
    K = out.num_kernels
    if not isinstance(num_bins, int) or isinstance(num_bins, bool) or num_bins < 1:
        raise ValueError(f"num_bins must be a positive int, got {num_bins!r}")
    O = num_bins
    if (
        not isinstance(table, torch.Tensor)
        or table.dim() not in (2, 3)
        or not table.is_floating_point()
        or table.shape[-2] != K
        or (table.dim() == 3 and table.shape[0] != B)
        or table.shape[-1] % O
        or table.shape[-1] == 0
    ):
        shape = tuple(table.shape) if isinstance(table, torch.Tensor) else type(table).__name__
        raise ValueError(
            f"table must be a float tensor [K, O*C] = [{K}, {O}*C] or [B, K, O*C] = "
            f"[{B}, {K}, {O}*C], got {shape}"
        )
    C = table.shape[-1] // O
    if (
        not isinstance(features, torch.Tensor)
        or not features.is_floating_point()
        or tuple(features.shape) != (B, C, H, W)
    ):
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else None
        raise ValueError(
            f"features must be a float tensor [B, C, H, W] = {(B, C, H, W)}, got {shape}"
        )
    impl = out.impl if impl is None else impl
    if impl not in _IMPLS:
        raise ValueError(f"impl must be one of {sorted(_IMPLS)}, got {impl!r}")
    if impl == "reference":
        phi = render_features(
            RenderOutput(
                out.idx, out.weights, out.mask, out.silhouette, out.visibility, "reference"
            ),
            table,
        ).reshape(B, O, C, H, W)
        feats = features.to(phi.dtype)
        dot = (phi * feats[:, None]).sum(dim=2)  # [B, O, H, W]
        return dot / torch.linalg.vector_norm(phi, dim=2).clamp_min(COSINE_EPS)
    if out.idx.device.type != "cpu":
        raise ValueError("render_cosine(impl='fast') runs on CPU tensors")
    w = out.weights.to(table.dtype)
    tb = table if table.dim() == 3 else table[None]
    return cosine_fast(out.idx, w, tb, features.to(table.dtype), O, COSINE_EPS)
