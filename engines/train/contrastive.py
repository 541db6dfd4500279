"""Contrastive learning of 3D-aware kernel features (3DNBF / CoKe scheme, DESIGN.md section 5).

A :class:`FeatureBank` holds ``K * O`` unit rows, one per (kernel, orientation bin), updated as an
exponential moving average of the features pooled onto visible kernels, plus a FIFO of clutter
(background) features. Row ``o * K + k`` is kernel ``k`` in bin ``o``.

:func:`info_nce` scores each pooled kernel feature against every bank row and every clutter row at
temperature 0.07: the kernel's own row in its bin is the positive, rows of its 1-ring neighbours (in
every bin) are masked out, the same kernel in another bin is a negative, and clutter logits get
``+ln(0.005)``. :func:`background_push` is the extra term pushing background features away from
all kernel rows (mean cosine).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "BankConfig",
    "FeatureBank",
    "background_push",
    "info_nce",
    "kernel_top1",
    "neighbour_row_mask",
    "spherical_kmeans",
]


@dataclass(frozen=True)
class BankConfig:
    momentum: float = 0.9
    n_clutter: int = 2160
    temperature: float = 0.07
    clutter_weight: float = 0.005


def _check(name: str, t: torch.Tensor, ndim: int, shape_doc: str) -> None:
    if not isinstance(t, torch.Tensor) or t.ndim != ndim:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{name} must be a tensor of shape {shape_doc}, got {got}")


class FeatureBank(torch.nn.Module):
    """EMA memory of kernel features per orientation bin and a clutter FIFO (buffers only)."""

    def __init__(
        self, n_kernels: int, n_bins: int, dim: int, config: BankConfig | None = None, seed: int = 0
    ) -> None:
        super().__init__()
        self.config = config or BankConfig()
        self.n_kernels, self.n_bins, self.dim = n_kernels, n_bins, dim
        g = torch.Generator().manual_seed(seed)
        rows = F.normalize(torch.randn(n_kernels * n_bins, dim, generator=g), dim=-1)
        clutter = F.normalize(torch.randn(self.config.n_clutter, dim, generator=g), dim=-1)
        self.register_buffer("rows", rows)  # [K*O, C]
        self.register_buffer("clutter", clutter)  # [Q, C]
        self.register_buffer("clutter_ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("seen", torch.zeros(n_kernels * n_bins, dtype=torch.bool))

    def row_index(self, kernel: torch.Tensor, bin_: torch.Tensor) -> torch.Tensor:  # [N], [N]
        return bin_ * self.n_kernels + kernel

    @torch.no_grad()
    def update(self, feats: torch.Tensor, rows: torch.Tensor) -> None:
        """EMA update of ``rows`` with the (detached) unit features ``feats``.

        feats: [N, C] pooled kernel features; rows: [N] bank row indices. Several features for one
        row in a batch are averaged first. A row never seen before is set to the batch mean.
        """
        _check("feats", feats, 2, "[N, C]")
        _check("rows", rows, 1, "[N]")
        if feats.shape[0] != rows.shape[0] or feats.shape[1] != self.dim:
            raise ValueError(f"feats must be [N, {self.dim}] matching rows [N]")
        if feats.shape[0] == 0:
            return
        uniq, inv = torch.unique(rows, return_inverse=True)
        summed = torch.zeros(len(uniq), self.dim, dtype=feats.dtype, device=feats.device)
        summed = summed.index_add_(0, inv, feats)
        mean = F.normalize(summed, dim=-1).to(self.rows.dtype)
        m = torch.where(self.seen[uniq], self.config.momentum, 0.0)[:, None]
        self.rows[uniq] = F.normalize(m * self.rows[uniq] + (1 - m) * mean, dim=-1)
        self.seen[uniq] = True

    @torch.no_grad()
    def push_clutter(self, feats: torch.Tensor) -> None:  # feats: [N, C]
        """Write background features into the FIFO (oldest rows overwritten first)."""
        _check("feats", feats, 2, "[N, C]")
        q = self.clutter.shape[0]
        feats = F.normalize(feats.detach().to(self.clutter), dim=-1)[-q:]
        n = feats.shape[0]
        idx = (self.clutter_ptr + torch.arange(n, device=self.clutter.device)) % q
        self.clutter[idx] = feats
        self.clutter_ptr.fill_(int((self.clutter_ptr + n) % q))

    def clutter_direction(self) -> torch.Tensor:  # -> [C]
        """Mean clutter direction ``c`` used by the fitting likelihood (unit)."""
        return F.normalize(self.clutter.mean(0), dim=-1)

    @torch.no_grad()
    def clutter_centres(self, n: int = 1, iters: int = 25) -> torch.Tensor:  # -> [N, C]
        """``n`` unit clutter directions: the mean direction for ``n = 1``, else spherical k-means
        of the clutter FIFO (deterministic: k-means++ seeding from a fixed generator), in the
        role of the released code's optional vMF mixture of clutter centres."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if n == 1:
            return self.clutter_direction()[None]
        return spherical_kmeans(F.normalize(self.clutter.float(), dim=-1), n, iters)

    def kernel_table(self) -> torch.Tensor:  # -> [K, O * C]
        """Bank as the renderer's feature table: row ``k`` is ``[phi_k0 | phi_k1 | ...]``."""
        rows = self.rows.reshape(self.n_bins, self.n_kernels, self.dim)
        return rows.permute(1, 0, 2).reshape(self.n_kernels, self.n_bins * self.dim)


def spherical_kmeans(
    x: torch.Tensor,  # [N, C] unit rows
    n: int,
    iters: int = 25,
    seed: int = 0,
) -> torch.Tensor:  # -> [n, C] unit centres
    """Spherical k-means (cosine assignment, normalised means) with k-means++ seeding."""
    if x.ndim != 2 or not 1 <= n <= x.shape[0]:
        raise ValueError(f"x must be [N, C] with N >= n = {n}, got {tuple(x.shape)}")
    g = torch.Generator().manual_seed(seed)
    idx = [int(torch.randint(x.shape[0], (1,), generator=g))]
    dist = 1 - x @ x[idx[0]]
    for _ in range(n - 1):  # k-means++: next centre with probability ~ squared distance
        p = dist.clamp(min=0) ** 2
        j = int(torch.multinomial(p / p.sum(), 1, generator=g)) if p.sum() > 0 else 0
        idx.append(j)
        dist = torch.minimum(dist, 1 - x @ x[j])
    c = x[idx].clone()
    for _ in range(iters):
        assign = (x @ c.T).argmax(dim=1)  # [N]
        summed = torch.zeros_like(c).index_add_(0, assign, x)
        empty = summed.norm(dim=1) < 1e-8  # keep a centre nothing was assigned to
        new = torch.where(empty[:, None], c, F.normalize(summed, dim=-1))
        if torch.allclose(new, c):
            break
        c = new
    return c


def neighbour_row_mask(
    kernels: torch.Tensor,  # [N] kernel index of each positive
    adjacency: torch.Tensor,  # [K, K] bool, 1-ring (no self loops needed)
    n_bins: int,
) -> torch.Tensor:  # -> [N, K*O] bool, True where the logit is masked out
    """Mask of bank rows belonging to 1-ring neighbours of each kernel, in every bin."""
    adj = adjacency.clone()
    adj.fill_diagonal_(False)
    return adj[kernels].repeat(1, n_bins)


def info_nce(
    feats: torch.Tensor,  # [N, C] unit features pooled on visible kernels
    rows: torch.Tensor,  # [N] positive bank row of each feature
    kernels: torch.Tensor,  # [N] kernel index of each feature
    bank: FeatureBank,
    adjacency: torch.Tensor,  # [K, K] bool
) -> torch.Tensor:
    """InfoNCE of DESIGN.md s5 (mean over the N features). Gradients flow into ``feats`` only."""
    _check("feats", feats, 2, "[N, C]")
    if feats.shape[0] == 0:
        return feats.sum() * 0.0
    cfg = bank.config
    # snapshots: the bank is updated in place after scoring, before backward runs
    fg = feats @ bank.rows.clone().t() / cfg.temperature  # [N, K*O]
    fg = fg.masked_fill(neighbour_row_mask(kernels, adjacency, bank.n_bins), float("-inf"))
    clu = feats @ bank.clutter.clone().t() / cfg.temperature + math.log(
        cfg.clutter_weight
    )  # [N, Q]
    return F.cross_entropy(torch.cat([fg, clu], dim=1), rows)


def background_push(bg_feats: torch.Tensor, bank: FeatureBank) -> torch.Tensor:  # [N, C]
    """Mean cosine between background features and every kernel row (to be minimised)."""
    _check("bg_feats", bg_feats, 2, "[N, C]")
    if bg_feats.shape[0] == 0:
        return bg_feats.sum() * 0.0
    return (bg_feats @ bank.rows.clone().t()).mean()


@torch.no_grad()
def kernel_top1(
    feats: torch.Tensor,  # [N, C] features of visible kernels
    kernels: torch.Tensor,  # [N]
    bank: FeatureBank,
    adjacency: torch.Tensor,  # [K, K] bool
) -> float:
    """Fraction of features whose nearest bank row (any bin) is the kernel or a 1-ring neighbour."""
    if feats.shape[0] == 0:
        return float("nan")
    nearest = (feats @ bank.rows.t()).argmax(dim=1) % bank.n_kernels  # [N]
    ok = (nearest == kernels) | adjacency[kernels, nearest]
    return ok.float().mean().item()
