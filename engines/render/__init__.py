"""Differentiable ray-Gaussian renderer of Neural Body Volumes (VoGE closest approach, as in 3DNBF).

``render`` gives per-pixel kernel lists and weights (fast C++ or dense reference implementation),
``render_features`` turns them into feature maps, ``pool_features`` pools image features onto
kernels. Geometry conventions: docs/conventions.md.
"""

from .api import COSINE_EPS, pool_features, render, render_cosine, render_features
from .common import DEFAULT_PRECISION, TAU, Camera, RenderOutput, camera_rays

__all__ = [
    "COSINE_EPS",
    "DEFAULT_PRECISION",
    "TAU",
    "Camera",
    "RenderOutput",
    "camera_rays",
    "pool_features",
    "render",
    "render_cosine",
    "render_features",
]
