"""Human motion: BVH reading/writing and retargeting of CMU motion capture onto SMPL."""

from .bvh import BVH, read_bvh, write_bvh
from .retarget import SMPLMotion, retarget, retarget_file

__all__ = ["BVH", "SMPLMotion", "read_bvh", "retarget", "retarget_file", "write_bvh"]
