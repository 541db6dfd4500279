"""Shared pieces of the NBV renderer: camera, output record, input checks, pixel rays.

Geometry follows docs/conventions.md: OpenCV pinhole camera in metres (x right, y down, z forward),
pixel (row i, column j) has its centre at (u, v) = (j, i).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch

__all__ = [
    "DEFAULT_PRECISION",
    "TAU",
    "Camera",
    "RenderOutput",
    "camera_rays",
    "check_centres",
    "check_precision",
]

#: Candidate threshold on the activation: -ln(1e-10) (VoGE with thr_activation = 0).
TAU = -math.log(1e-10)
#: Isotropic kernel precision a in A = a I (m^-2), as in the released 3DNBF code.
DEFAULT_PRECISION = 4000.0


def _is_scalar(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


@dataclass(frozen=True)
class Camera:
    """OpenCV pinhole intrinsics of a feature map (docs/conventions.md, "Cameras").

    ``fx, fy, cx, cy`` are floats (one camera for the whole batch) or tensors ``[B]`` (one camera
    per body); ``width, height`` are the map size in pixels, shared by the batch.
    """

    fx: float | torch.Tensor
    fy: float | torch.Tensor
    cx: float | torch.Tensor
    cy: float | torch.Tensor
    width: int
    height: int

    def __post_init__(self):
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"Camera.{name} must be a positive int, got {v!r}")
        sizes = set()
        for name in ("fx", "fy", "cx", "cy"):
            v = getattr(self, name)
            if _is_scalar(v):
                if not math.isfinite(v):
                    raise ValueError(f"Camera.{name} must be finite, got {v!r}")
                continue
            if not isinstance(v, torch.Tensor) or v.dim() != 1 or not v.is_floating_point():
                raise ValueError(f"Camera.{name} must be a float or a float tensor [B]")
            sizes.add(v.shape[0])
        if len(sizes) > 1:
            raise ValueError(f"Camera fx, fy, cx, cy tensors must share one shape [B], got {sizes}")
        for name in ("fx", "fy"):
            v = getattr(self, name)
            ok = v > 0 if _is_scalar(v) else bool((v > 0).all())
            if not ok:
                raise ValueError(f"Camera.{name} must be positive")

    @classmethod
    def from_matrix(cls, K: torch.Tensor, width: int, height: int) -> Camera:  # K: [B, 3, 3]/[3, 3]
        """Camera from an intrinsic matrix (shared if ``[3, 3]``, per body if ``[B, 3, 3]``)."""
        if not isinstance(K, torch.Tensor) or K.shape[-2:] != (3, 3) or K.dim() not in (2, 3):
            raise ValueError("K must be a tensor [3, 3] or [B, 3, 3]")
        if K.dim() == 2:
            k = K.detach().double()
            return cls(
                float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), width, height
            )
        return cls(K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], width, height)

    def repeat(self, n: int) -> Camera:
        """The camera of a batch stacked ``n`` times (``torch.cat([x] * n)`` of its bodies)."""
        if self.batch is None:
            return self
        rep = {k: getattr(self, k).repeat(n) for k in ("fx", "fy", "cx", "cy")}
        return Camera(**rep, width=self.width, height=self.height)

    @property
    def batch(self) -> int | None:
        """Number of per-body cameras, or None for one shared camera."""
        for v in (self.fx, self.fy, self.cx, self.cy):
            if isinstance(v, torch.Tensor):
                return v.shape[0]
        return None

    def intrinsics(self) -> torch.Tensor:  # -> [Bc, 4] float64 (fx, fy, cx, cy), Bc in {1, B}
        n = self.batch or 1
        cols = []
        for v in (self.fx, self.fy, self.cx, self.cy):
            if isinstance(v, torch.Tensor):
                cols.append(v.detach().to(torch.float64).cpu())
            else:
                cols.append(torch.full((n,), float(v), dtype=torch.float64))
        return torch.stack(cols, dim=-1)


@dataclass
class RenderOutput:
    """Per-pixel kernel lists of one render (docs/conventions.md letters).

    idx: ``[B, H, W, M]`` long kernel index per slot, front to back, -1 for an empty slot.
    weights: ``[B, H, W, M]`` render weights w_m (0 in empty slots), differentiable w.r.t. centres.
    mask: ``[B, H, W]`` bool, at least one candidate kernel (no gradient).
    silhouette: ``[B, H, W]`` min(sum_m w_m, 1).
    visibility: ``[B, K]`` bool, the kernel is the front slot at one pixel or more.
    """

    idx: torch.Tensor  # [B, H, W, M]
    weights: torch.Tensor  # [B, H, W, M]
    mask: torch.Tensor  # [B, H, W]
    silhouette: torch.Tensor  # [B, H, W]
    visibility: torch.Tensor  # [B, K]
    impl: str = "fast"

    @property
    def num_kernels(self) -> int:
        return self.visibility.shape[1]


def check_centres(centres: torch.Tensor) -> None:  # centres: [B, K, 3]
    if not isinstance(centres, torch.Tensor):
        raise ValueError("centres must be a tensor [B, K, 3]")
    if centres.dim() != 3 or centres.shape[-1] != 3 or centres.shape[1] == 0:
        raise ValueError(f"centres must have shape [B, K, 3], got {tuple(centres.shape)}")
    if centres.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"centres must be float32 or float64 [B, K, 3], got {centres.dtype}")


def check_precision(precision, centres: torch.Tensor) -> torch.Tensor:  # -> [K]
    """Kernel precisions a_k (A_k = a_k I, m^-2): a constant ``[K]`` tensor, centres' dtype."""
    K = centres.shape[1]
    if _is_scalar(precision):
        if not precision > 0 or not math.isfinite(precision):
            raise ValueError(f"precision must be positive and finite, got {precision!r}")
        return torch.full((K,), float(precision), dtype=centres.dtype, device=centres.device)
    if not isinstance(precision, torch.Tensor) or precision.shape != (K,):
        shape = tuple(precision.shape) if isinstance(precision, torch.Tensor) else type(precision)
        raise ValueError(f"precision must be a positive float or a tensor [K] = [{K}], got {shape}")
    if not precision.is_floating_point() or not bool((precision > 0).all()):
        raise ValueError("precision must be a positive float tensor [K]")
    return precision.detach().to(centres.dtype)


def check_camera(camera: Camera, B: int) -> None:
    if not isinstance(camera, Camera):
        raise ValueError(f"camera must be a Camera, got {type(camera).__name__}")
    if camera.batch is not None and camera.batch != B:
        raise ValueError(f"camera tensors must have shape [B] = [{B}], got [{camera.batch}]")


def check_slots(M) -> None:
    if not isinstance(M, int) or isinstance(M, bool) or M < 1:
        raise ValueError(f"M must be a positive int, got {M!r}")


@functools.lru_cache(maxsize=16)
def _shared_rays(fx, fy, cx, cy, width, height, dtype, device) -> torch.Tensor:
    cam = Camera(fx, fy, cx, cy, width, height)
    return _rays(cam).to(dtype=dtype, device=device)


def _rays(camera: Camera) -> torch.Tensor:  # -> [Bc, H, W, 3] float64
    intr = camera.intrinsics()  # [Bc, 4]
    fx, fy, cx, cy = (intr[:, n].view(-1, 1, 1) for n in range(4))
    j = torch.arange(camera.width, dtype=torch.float64).view(1, 1, -1)
    i = torch.arange(camera.height, dtype=torch.float64).view(1, -1, 1)
    x = ((j - cx) / fx).expand(-1, camera.height, -1)
    y = ((i - cy) / fy).expand(-1, -1, camera.width)
    d = torch.stack([x, y, torch.ones_like(x)], dim=-1)
    return d / d.norm(dim=-1, keepdim=True)


def camera_rays(
    camera: Camera, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> torch.Tensor:
    """Unit ray directions through the pixel centres: ``[Bc, H, W, 3]``, Bc = 1 or B.

    r(i, j) = normalize(((j - cx) / fx, (i - cy) / fy, 1)), computed in float64 then cast.
    Rays of shared (float) cameras are cached; treat the result as read-only.
    """
    if camera.batch is None:
        dev = torch.device(device) if device is not None else torch.device("cpu")
        return _shared_rays(
            float(camera.fx), float(camera.fy), float(camera.cx), float(camera.cy),
            camera.width, camera.height, dtype, dev,
        )  # fmt: skip
    # per-body cameras: cached on the (frozen) camera object, e.g. across a fit's steps
    key = (dtype, str(device))
    cache = camera.__dict__.setdefault("_rays_cache", {})
    if key not in cache:
        cache[key] = _rays(camera).to(dtype=dtype, device=device)
    return cache[key]
