"""Reference NBV renderer: plain torch, dense over all kernels, the equations written literally.

For every pixel ray r (unit) and kernel k (centre mu_k in camera coordinates, A_k = a_k I):
  dsd_k = r^T A_k r,  l_k = mu_k^T A_k r / dsd_k,  act_k = (mu_k - l_k r)^T A_k (mu_k - l_k r);
candidates act_k < TAU, the M nearest by l_k front to back, then
  T_m = exp(-sum_k e^{-act_k} 0.5 [1 + erf((l_m - l_k) sqrt(dsd_k))]),
  w_m = T_m e^{-act_m} / e^{-0.5}.
Cost O(B H W K); used to check the fast renderer (engines/render/fast.py) and in tests.
"""

from __future__ import annotations

import math

import torch

from .common import TAU, Camera, RenderOutput, camera_rays

__all__ = ["render_reference"]


def render_reference(
    centres: torch.Tensor,  # [B, K, 3]
    camera: Camera,
    precision: torch.Tensor,  # [K], constant
    M: int,
) -> RenderOutput:
    """Dense render; inputs already checked by ``engines.render.render``."""
    B, K, _ = centres.shape
    H, W = camera.height, camera.width
    rays = camera_rays(camera, centres.dtype, centres.device).reshape(-1, H * W, 3)  # [Bc, P, 3]
    r = rays[:, :, None, :]  # [Bc, P, 1, 3]
    mu = centres[:, None, :, :]  # [B, 1, K, 3]
    a = precision.view(1, 1, K)  # A_k = a_k I
    dsd = a * (r * r).sum(-1)  # r^T A r  [Bc, P, K]
    l = a * (mu * r).sum(-1) / dsd  # mu^T A r / dsd  [B, P, K]
    d = mu - l[..., None] * r  # [B, P, K, 3]
    act = a * (d * d).sum(-1)  # [B, P, K]
    dsd = dsd.expand_as(act)

    cand = act.detach() < TAU  # [B, P, K]
    m = min(M, K)
    key = torch.where(cand, l.detach(), torch.full_like(l.detach(), math.inf))
    order = key.topk(m, dim=-1, largest=False, sorted=True).indices  # [B, P, m]
    valid = cand.gather(-1, order)  # [B, P, m]
    l_s = l.gather(-1, order)
    act_s = act.gather(-1, order)
    dsd_s = dsd.gather(-1, order)

    e = torch.where(valid, torch.exp(-act_s), torch.zeros_like(act_s))  # e^{-act}, 0 if empty
    z = (l_s[..., :, None] - l_s[..., None, :]) * dsd_s[..., None, :].sqrt()  # [B, P, m, m]
    S = (e[..., None, :] * 0.5 * (1 + torch.erf(z))).sum(-1)  # sum over selected k
    T = torch.exp(-S)
    w = torch.where(valid, T * e / math.exp(-0.5), torch.zeros_like(e))  # [B, P, m]
    idx = torch.where(valid, order, torch.full_like(order, -1))
    if m < M:
        w = torch.cat([w, w.new_zeros(B, H * W, M - m)], dim=-1)
        idx = torch.cat([idx, idx.new_full((B, H * W, M - m), -1)], dim=-1)

    idx = idx.reshape(B, H, W, M)
    w = w.reshape(B, H, W, M)
    mask = idx[..., 0] >= 0
    visibility = torch.zeros(B, K, dtype=torch.bool, device=centres.device)
    for b in range(B):
        front = idx[b, ..., 0]
        visibility[b, front[front >= 0]] = True
    silhouette = w.sum(-1).clamp(max=1.0)
    return RenderOutput(idx, w, mask, silhouette, visibility, impl="reference")
