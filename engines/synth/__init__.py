"""Synthetic training / evaluation data: the free body model rendered with real human motion.

Modules: ``raster`` (software z-buffer rasteriser), ``appearance`` (garments, solid textures,
shading), ``backgrounds`` (real OpenCV sample photos and procedural ones), ``occluders``,
``camera`` (frame cameras, crops), ``poses`` (mocap takes by split, mirroring), ``scene`` (one
crop with ground truth), ``dataset`` (``SynthConfig``, ``SynthDataset``), ``sequence``
(video-like sequences), ``preview`` (CLI grid). Conventions: docs/conventions.md.
"""

from .dataset import SynthConfig, SynthDataset
from .sequence import SynthSequence, render_sequence

__all__ = ["SynthConfig", "SynthDataset", "SynthSequence", "render_sequence"]
