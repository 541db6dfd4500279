"""Fitting settings of :class:`engines.fitter.NBVFitter` (DESIGN.md s3 "Fitting", "Warm start").

Defaults follow the released 3DNBF code where it has one; every other value says how it was
chosen. Unknown keys and wrongly typed values are rejected (:meth:`FitConfig.from_dict`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

__all__ = ["FitConfig"]


@dataclass(frozen=True)
class FitConfig:
    """Fitting settings; defaults follow the released code where it has one."""

    robust: bool = True  # occlusion-robust likelihood (else the plain one)
    lr: float = 0.02  # cold start (0.02 robust / AdvOcc; the code uses 0.002 otherwise)
    stage1_steps: int = 40  # global orient + translation
    stage2_steps: int = 80  # global orient + body pose
    flip_hypothesis: bool = True  # also optimise the front/back-flipped start
    # also start from the regression's estimate turned +-90 degrees about the body's vertical
    # axis: under AdvOcc@80 the regression's global orientation is off by a median ~100 degrees,
    # almost all of it about the vertical. Measured on the val split (README): within noise
    # (-5 mm on AdvOcc@80 with stage2_hypotheses=1), the likelihood being what misleads the fit
    turn_hypotheses: bool = False
    # starts kept for stage 2, the best by stage-1 objective (+ part term): 0 = all of them
    stage2_hypotheses: int = 0
    warm_steps: int = 3  # per warm start (x 3 with warm_orient_hypothesis + warm_flip_hypothesis)
    warm_lr: float = 0.01
    extrapolate: float = 0.0  # fraction of the last per-frame velocity added at warm start
    # warm start's body pose moved this fraction of the way from the previous fit's body pose
    # to the frame's regression estimate (when given; axis-angle vectors blended linearly);
    # global orientation and translation stay the previous fit's (the likelihood fixes those
    # well, the articulation less so). 0 = the previous fit's pose. Measured on val (10 seqs x 8
    # frames, warm MPJPE mm, blend 0 / 0.5 / 1): clean 137.5 / 139.7 / 137.6, occ 184.9 / 186.9 /
    # 185.5, so off by default
    warm_pose_blend: float = 0.0
    # warm start also runs its steps from the start turned to the frame's regression estimate
    # of the global orientation, and keeps the better by objective (+ part term): a track then
    # follows turns faster than its steps can rotate it (seen in holdout take cmu_61_12, which
    # spins 18 degrees a frame at 30 fps) and leaves a wrong orientation when the regression
    # finds a better one. Twice the steps (both counted). Measured on the val split (10 seqs x
    # 8 frames, warm MPJPE mm, clean / occ / AdvOcc@80): 8 steps from the previous fit 137.5 /
    # 168.1 / 397.4; 4 + 4 with this 135.3 / 170.5 / 374.0; 5 + 5 134.2 / 165.0 / 374.3 (the
    # default until warm_flip_hypothesis)
    warm_orient_hypothesis: bool = True
    # warm start also runs its steps from the track flipped front to back (the cold start's
    # flip_hypothesis, anchored at the mirrored regression pose), so a track that locked onto
    # the wrong facing gets out of it. Measured on the val split (10 seqs x 8 frames, warm
    # MPJPE mm, clean / occ / AdvOcc@80, with warm_orient_hypothesis): 5 + 5 steps 133.7 / 165.2
    # / 385.0; 5 + 5 + 5 with this 137.6 / 166.8 / 360.1; 3 + 3 + 3 134.3 / 165.3 / 366.3 (the
    # default: 9 steps a frame)
    warm_flip_hypothesis: bool = True
    temporal_weight: float = 0.0  # pull towards the (extrapolated) previous state at warm start
    M: int = 10  # kernels kept per pixel
    precision: float = 4000.0  # isotropic kernel precision (m^-2)
    orient_mode: Literal["softmax", "normalize"] = "normalize"
    hinge_weight: float = 0.1
    # learned pose prior (engines.motion.sampler.PosePrior: Gaussian of the training takes' body
    # poses + their joint limits; never the holdout takes), in place of VPoser/GMM files
    pose_prior_weight: float = 0.1  # measured: 0 / 0.1 / 0.5 / 2 (benchmarks.accuracy)
    # pull of the body pose towards the regression head's estimate (the start of a cold fit, the
    # frame's regression at warm start when given): sum of squared axis-angle differences. In
    # the role of the released code's 2D keypoint term (no keypoint detector here). Measured
    # (benchmarks.accuracy, 5 x 8 held-out frames): 0 / 0.3 / 1 / 3; 1 keeps clean fits at the
    # regression's error (without it fitting added ~25%) and the AdvOcc@80 gain
    regression_prior_weight: float = 1.0
    # the cold start's hypotheses (the regression's start and its front/back flip) are compared
    # on objective + part_weight * part term (engines.likelihood.part_likelihood: the rendered
    # part labels against the network's part head) when the caller passes part logits. Measured
    # on the val split (benchmarks.accuracy --split val, cold_fit - regression MPJPE, shipped
    # model): 0 / 0.3 gave clean +0.9% / -8.3%, occ +3.3% / -2.6%, AdvOcc@80 -4.8% / -10.9%
    # (0.1-1 choose alike). Only in that choice: inside the objective it made fits worse
    part_weight: float = 0.3
    # clutter directions of the likelihood's clutter model: 1 = the mean of the clutter FIFO
    # (the released code's default), N > 1 = N spherical k-means centres of it, scored by their
    # best cosine (ModelBundle.clutter). Measured on the val split (README "Where the fit's
    # remaining error comes from"): 4 / 16 made AdvOcc@80 fits worse (+19 / +13 mm)
    clutter_components: int = 1
    occluded_fraction: float = 0.3  # covered pixels explained by clutter above this: occluded
    lost_fraction: float = 0.85  # ... above this: the body no longer explains the image
    lost_min_coverage: int = 4  # fewer covered pixels than this: lost (body out of view)
    # pixels counted as body for the occlusion map: silhouette above this (kernels are ~1 cm
    # wide and ~5 cm apart, so the soft silhouette is patchy; 0.1 covers the body, 0.5 does not)
    support_threshold: float = 0.1

    def __post_init__(self) -> None:
        for name in ("stage1_steps", "stage2_steps", "warm_steps", "M", "lost_min_coverage",
                     "stage2_hypotheses"):  # fmt: skip
            if getattr(self, name) < 0:
                raise ValueError(f"FitConfig.{name} must be >= 0")
        if self.M < 1:
            raise ValueError("FitConfig.M must be >= 1")
        if not 0.0 <= self.warm_pose_blend <= 1.0:
            raise ValueError("FitConfig.warm_pose_blend must be in [0, 1]")
        if self.clutter_components < 1:
            raise ValueError("FitConfig.clutter_components must be >= 1")
        if self.orient_mode not in ("softmax", "normalize"):
            raise ValueError(
                f"FitConfig.orient_mode must be softmax|normalize, got {self.orient_mode!r}"
            )

    @classmethod
    def from_dict(cls, d: dict) -> FitConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = set(d) - set(known)
        if unknown:
            raise ValueError(f"unknown fit config key(s): {sorted(unknown)}")
        out = {}
        for k, v in d.items():
            typ = type(getattr(cls(), k))
            if typ is float and isinstance(v, int) and not isinstance(v, bool):
                v = float(v)
            if not isinstance(v, typ):
                raise ValueError(f"fit config key {k!r} must be {typ.__name__}, got {v!r}")
            out[k] = v
        return cls(**out)
