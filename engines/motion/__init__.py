"""Human motion: BVH reading/writing, retargeting of CMU motion capture onto SMPL, and pose
statistics (joint limits, prior, sampler) learned from the training takes."""

from .bvh import BVH, bvh_from_rotations, read_bvh, write_bvh
from .retarget import SMPLMotion, motion_to_bvh, retarget, retarget_file, smpl_fk
from .sampler import PosePrior, PoseSampler, PoseStats, learn_pose_stats

__all__ = [
    "BVH",
    "PosePrior",
    "PoseSampler",
    "PoseStats",
    "SMPLMotion",
    "bvh_from_rotations",
    "learn_pose_stats",
    "motion_to_bvh",
    "read_bvh",
    "retarget",
    "retarget_file",
    "smpl_fk",
    "write_bvh",
]
