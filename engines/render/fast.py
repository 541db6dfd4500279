"""Fast NBV renderer: a small C++ extension (engines/csrc/nbv_*.cpp) built at first use.

Each kernel is culled to its projected footprint; per pixel the M nearest candidates are kept by
insertion sort, and the weights and their hand-written backward are evaluated on those lists only.
Same equations and outputs as engines/render/reference.py.

Build: ``torch.utils.cpp_extension.load`` compiles the project's own source on first use and caches
the result outside the repository (``$TORCH_EXTENSIONS_DIR``, default
``~/.cache/torch_extensions``; see engines/cext.py). It needs a C++17 compiler (g++) and the
``ninja`` build tool on PATH (the ``ninja`` PyPI package or the system package); OpenMP is used
where the compiler has it.
"""

from __future__ import annotations

import functools

import torch

from engines.cext import load_extension

from .common import TAU, Camera, RenderOutput, camera_rays

__all__ = ["cosine_extension", "cosine_fast", "extension", "features_fast", "render_fast"]


@functools.cache
def extension():
    """The compiled renderer extension (built and cached on the first call in a process)."""
    return load_extension("nbfstream_nbv_render", ["nbv_render.cpp", "nbv_features.cpp"], True,
                          "render(..., impl='reference') works without it")  # fmt: skip


@functools.cache
def cosine_extension():
    """The fused cosine extension (engines/csrc/nbv_cosine.cpp), built on first use."""
    return load_extension("nbfstream_nbv_cosine", ["nbv_cosine.cpp"], True,
                          "render_cosine(..., impl='reference') works without it")  # fmt: skip


class _FastRender(torch.autograd.Function):
    @staticmethod
    def forward(ctx, centres, rays, intr, precision, M):
        idx, weights, vis, wsum = extension().forward(centres, rays, intr, precision, M, TAU)
        ctx.save_for_backward(centres, rays, precision, idx)
        ctx.mark_non_differentiable(idx, vis)
        ctx.set_materialize_grads(False)
        return idx, weights, vis, wsum

    @staticmethod
    def backward(ctx, _gidx, grad_w, _gvis, grad_wsum):
        centres, rays, precision, idx = ctx.saved_tensors
        if not ctx.needs_input_grad[0] or (grad_w is None and grad_wsum is None):
            return None, None, None, None, None
        empty = centres.new_empty(0)
        grad = extension().backward(
            empty if grad_w is None else grad_w,
            empty if grad_wsum is None else grad_wsum,
            centres,
            rays,
            precision,
            idx,
        )
        return grad, None, None, None, None


class _FastFeatures(torch.autograd.Function):
    @staticmethod
    def forward(ctx, idx, weights, table):
        ctx.save_for_backward(idx, weights, table)
        return extension().features_forward(idx, weights, table)

    @staticmethod
    def backward(ctx, grad):
        idx, weights, table = ctx.saved_tensors
        need_w, need_t = ctx.needs_input_grad[1], ctx.needs_input_grad[2]
        if not (need_w or need_t):
            return None, None, None
        gw, gt = extension().features_backward(grad, idx, weights, table, need_w, need_t)
        return None, gw.to(weights.dtype) if need_w else None, gt if need_t else None


class _FastCosine(torch.autograd.Function):
    @staticmethod
    def forward(ctx, idx, weights, table, features, O, eps):
        ctx.save_for_backward(idx, weights, table, features)
        ctx.O, ctx.eps = O, eps
        return cosine_extension().cosine_forward(idx, weights, table, features, O, eps)

    @staticmethod
    def backward(ctx, grad):
        idx, weights, table, features = ctx.saved_tensors
        if ctx.needs_input_grad[2] or ctx.needs_input_grad[3]:
            raise RuntimeError(
                "render_cosine (fast) differentiates w.r.t. the render weights only; "
                "detach table and features or use impl='reference'"
            )
        if not ctx.needs_input_grad[1]:
            return None, None, None, None, None, None
        gw = cosine_extension().cosine_backward(grad, idx, weights, table, features, ctx.O, ctx.eps)
        return None, gw.to(weights.dtype), None, None, None, None


def cosine_fast(
    idx: torch.Tensor,  # [B, H, W, M]
    weights: torch.Tensor,  # [B, H, W, M]
    table: torch.Tensor,  # [Bt, K, O*C], Bt in {1, B}
    features: torch.Tensor,  # [B, C, H, W]
    O: int,
    eps: float,
) -> torch.Tensor:  # -> [B, O, H, W]
    """Fused cos(Phi_o(p), F(p)) per pixel and bin (C++); gradient w.r.t. the weights only."""
    return _FastCosine.apply(idx, weights, table, features, O, eps)


def features_fast(
    idx: torch.Tensor,  # [B, H, W, M]
    weights: torch.Tensor,  # [B, H, W, M]
    table: torch.Tensor,  # [Bt, K, C], Bt in {1, B}
) -> torch.Tensor:  # -> [B, C, H, W]
    """Feature map sum_m weights[..., m] table[idx[..., m]] over filled slots (C++)."""
    return _FastFeatures.apply(idx, weights, table)


def render_fast(
    centres: torch.Tensor,  # [B, K, 3]
    camera: Camera,
    precision: torch.Tensor,  # [K], constant
    M: int,
) -> RenderOutput:
    """Culled render; inputs already checked by ``engines.render.render``."""
    if centres.device.type != "cpu":
        raise ValueError("the fast renderer runs on CPU tensors; centres must be on the CPU")
    rays = camera_rays(camera, centres.dtype)  # [Bc, H, W, 3]
    idx, weights, vis, wsum = _FastRender.apply(centres, rays, camera.intrinsics(), precision, M)
    mask = idx[..., 0] >= 0
    silhouette = wsum.clamp(max=1.0)  # wsum = weights.sum(-1), computed in C++
    return RenderOutput(idx, weights, mask, silhouette, vis, impl="fast")
