"""Neural Body Volume fitting by analysis-by-synthesis (DESIGN.md s3 "Fitting", "Warm start").

The fitter owns nothing per track: callers hold :class:`BodyState` values (one row per person)
and pass them in; every entry point returns new states and leaves its inputs untouched.

- :meth:`NBVFitter.cold_start`: from the regression head; the released code's two Adam stages
  (global orient + translation, then global orient + body pose), the best iterate kept per body,
  and optionally the front/back-flipped start and starts turned +-90 degrees about the body's
  vertical axis optimised too (``FitConfig.flip_hypothesis``, ``turn_hypotheses``; with
  ``stage2_hypotheses`` only the best after stage 1 go on); given the network's part logits,
  the hypotheses are compared with the part term as well (``FitConfig.part_weight``).
- :meth:`NBVFitter.warm_start`: from the previous frame's fit (optionally extrapolated with the
  last velocity), a few steps on all pose parameters, optionally also from the same start
  turned to the regression's orientation (``FitConfig.warm_orient_hypothesis``), with
  diagnostics (final likelihood, occlusion map, a ``lost`` flag when the body no longer
  explains the image).

Geometry: docs/conventions.md (axis-angle in SMPL order; translation in the OpenCV camera frame,
metres; the feature map's camera is a :class:`engines.render.Camera`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch

from engines.body import BodyModel
from engines.body_state import (
    BodyState,
    extrapolate,
    flip_front_back,
    turn_about_vertical,
    velocity,
)
from engines.featnet import NUM_PARTS
from engines.fit_config import FitConfig
from engines.likelihood import LikelihoodOutput, feature_likelihood_from_cos, part_likelihood
from engines.nbv import NeuralBodyVolume
from engines.render import Camera, render, render_cosine, render_features

__all__ = [
    "BodyState",
    "FitConfig",
    "FitResult",
    "NBVFitter",
    "flip_front_back",
    "hinge_prior",
    "velocity",
]

# Hinge prior on body_pose [69] entries: left elbow y, right elbow y, left knee x, right knee x,
# with the sign that makes the natural bend cost nothing (docs/conventions.md frames).
_HINGE_INDEX = (52, 55, 9, 12)
_HINGE_SIGN = (1.0, -1.0, -1.0, -1.0)


class _Evaluation(NamedTuple):
    total: torch.Tensor  # [B] objective (likelihood + priors)
    lik: LikelihoodOutput
    joints: torch.Tensor  # [B, 24, 3]


@dataclass
class FitResult:
    state: BodyState  # fitted parameters (detached)
    loss: torch.Tensor  # [B] final objective (likelihood + priors)
    likelihood: torch.Tensor  # [B] likelihood term alone (lower is better)
    occlusion: torch.Tensor  # [B, H, W] bool, covered pixels explained by clutter
    occluded_fraction: torch.Tensor  # [B]
    coverage: torch.Tensor  # [B] number of covered pixels
    occluded: torch.Tensor  # [B] bool
    lost: torch.Tensor  # [B] bool
    joints: torch.Tensor  # [B, 24, 3] camera frame
    steps: int  # optimiser steps taken per body
    # every start's fitted state, start-major [S*B], when the cold start chose between S > 1
    # (None otherwise): diagnostics only (benchmarks.accuracy's cold_fit_oracle row)
    hypotheses: BodyState | None = None
    # with ``hypotheses``: each one's objective and part term (NaN without part logits),
    # [S*B, 2], so a different part_weight's choice can be replayed (benchmarks.accuracy)
    hypothesis_scores: torch.Tensor | None = None


def hinge_prior(body_pose: torch.Tensor) -> torch.Tensor:  # [B, 69] -> [B]
    """SMPLify's bend prior: sum of exp(sign * angle)^2 on elbows (y) and knees (x)."""
    sign = body_pose.new_tensor(_HINGE_SIGN)
    return (torch.exp(body_pose[:, list(_HINGE_INDEX)] * sign) ** 2).sum(dim=1)


class NBVFitter:
    """Fits NBV bodies to feature maps; stateless across calls (see module docstring)."""

    def __init__(
        self,
        body: BodyModel,
        nbv: NeuralBodyVolume,
        kernel_table: torch.Tensor,  # [K, O*C] orientation features per kernel, bins stacked
        clutter: torch.Tensor,  # [C] or [N, C] unit clutter direction(s)
        config: FitConfig | None = None,
    ) -> None:
        K, O = nbv.num_kernels, nbv.num_bins
        if kernel_table.dim() != 2 or kernel_table.shape[0] != K or kernel_table.shape[1] % O:
            raise ValueError(
                f"kernel_table must be [K, O*C] with K = {K}, O = {O}, got "
                f"{tuple(kernel_table.shape)}"
            )
        C = kernel_table.shape[1] // O
        if not (clutter.shape == (C,) or (clutter.ndim == 2 and clutter.shape[1] == C)):
            raise ValueError(
                f"clutter must be [C] or [N, C] with C = {C}, got {tuple(clutter.shape)}"
            )
        self.body, self.nbv, self.config = body, nbv, config or FitConfig()
        self.table = kernel_table.detach()
        self.clutter = clutter.detach()
        self.feature_dim = C
        self.pose_prior = None
        if self.config.pose_prior_weight > 0:
            from engines.motion.sampler import PosePrior

            self.pose_prior = PosePrior.default()

    # ------------------------------------------------------------------ objective
    def objective(
        self,
        state: BodyState,
        features: torch.Tensor,  # [B, C, H, W] unit features
        camera: Camera,
        pose_anchor: torch.Tensor | None = None,  # [B, 69] regression body pose
    ) -> tuple[torch.Tensor, LikelihoodOutput, torch.Tensor]:  # ([B], lik, joints [B, 24, 3])
        """Total loss per body (likelihood + priors), the likelihood record and the joints.

        With ``pose_anchor`` and ``regression_prior_weight`` > 0 the total also has
        ``w * sum((body_pose - pose_anchor)^2)``."""
        cfg = self.config
        centres, joints = self.nbv.pose(self.body, *state.as_tuple())
        out = render(centres, camera, cfg.precision, cfg.M)
        orient = render_features(out, self.nbv.orientation_weights(joints))  # [B, O, H, W]
        # fused per-pixel cosine of the rendered kernel features (no [B, O*C, H, W] map)
        cos = render_cosine(out, self.table, features.detach(), orient.shape[1])  # [B, O, H, W]
        lik = feature_likelihood_from_cos(
            features,
            cos,
            orient,
            out.mask,
            self.clutter,
            robust=cfg.robust,
            orient_mode=cfg.orient_mode,
            support=out.silhouette > cfg.support_threshold,
        )
        total = lik.loss + cfg.hinge_weight * hinge_prior(state.body_pose)
        if self.pose_prior is not None:
            if self.pose_prior.mean.device != state.body_pose.device:
                self.pose_prior = self.pose_prior.to(state.body_pose.device)
            total = total + cfg.pose_prior_weight * self.pose_prior(state.body_pose)
        if pose_anchor is not None and cfg.regression_prior_weight > 0:
            d = state.body_pose - pose_anchor.detach()
            total = total + cfg.regression_prior_weight * (d**2).sum(dim=1)
        return total, lik, joints

    @property
    def part_labels(self) -> torch.Tensor:  # -> [K] the part head's class of each kernel
        return self.nbv.kernel_joint + 1  # dominant skinning joint + 1 (0 is background)

    @torch.no_grad()
    def part_score(
        self,
        state: BodyState,
        camera: Camera,
        parts: torch.Tensor,  # [B, P, H, W] part-head log-probabilities
    ) -> torch.Tensor:  # -> [B] engines.likelihood.part_likelihood of the rendered body
        centres, _ = self.nbv.pose(self.body, *state.as_tuple())
        out = render(centres, camera, self.config.precision, self.config.M)
        return part_likelihood(out.idx, out.weights, self.part_labels, parts)

    def _check_inputs(
        self,
        state: BodyState,
        features: torch.Tensor,
        camera: Camera,
        part_logits: torch.Tensor | None = None,
    ) -> torch.Tensor | None:  # -> [B, P, H, W] part log-probabilities (None: no part term)
        if not isinstance(features, torch.Tensor) or features.dim() != 4:
            raise ValueError("features must be a tensor [B, C, H, W]")
        B, C, H, W = features.shape
        if C != self.feature_dim:
            raise ValueError(f"features must have C = {self.feature_dim} channels, got {C}")
        if state.batch != B:
            raise ValueError(f"state has {state.batch} bodies but features has B = {B}")
        if (camera.height, camera.width) != (H, W):
            raise ValueError(f"camera is {camera.width}x{camera.height}, features are {W}x{H}")
        if part_logits is None or self.config.part_weight <= 0:
            return None
        P = NUM_PARTS
        if not isinstance(part_logits, torch.Tensor) or tuple(part_logits.shape) != (B, P, H, W):
            got = tuple(part_logits.shape) if isinstance(part_logits, torch.Tensor) else part_logits
            raise ValueError(f"part_logits must be [B, {P}, H, W] = {(B, P, H, W)}, got {got}")
        return torch.log_softmax(part_logits.detach().float(), dim=1)

    # ------------------------------------------------------------------ optimisation
    def _optimise(
        self,
        state: BodyState,
        features: torch.Tensor,
        camera: Camera,
        free: tuple[str, ...],
        steps: int,
        lr: float,
        anchor: BodyState | None = None,
        pose_anchor: torch.Tensor | None = None,  # [B, 69]
    ) -> tuple[BodyState, torch.Tensor, _Evaluation | None]:
        """Adam on the ``free`` fields; returns the best iterate per body, its loss and, when the
        final iterate is the best of every body, its evaluation (so ``_finish`` need not redo it).
        The final iterate is evaluated without autograd."""
        cfg = self.config
        params = {
            n: getattr(state, n).detach().clone().requires_grad_(n in free)
            for n in ("global_orient", "body_pose", "betas", "transl")
        }
        opt = torch.optim.Adam([params[n] for n in free], lr=lr, betas=(0.9, 0.99))
        best_state, best_loss, last = state.detach(), None, None
        for step in range(steps + 1):
            final = step == steps
            cur = BodyState(**params)
            with torch.set_grad_enabled(not final):
                total, lik, joints = self.objective(cur, features, camera, pose_anchor)
                loss = total
                if anchor is not None and cfg.temporal_weight > 0:
                    d = torch.cat(
                        [
                            cur.global_orient - anchor.global_orient,
                            cur.body_pose - anchor.body_pose,
                            10.0 * (cur.transl - anchor.transl),
                        ],
                        dim=1,
                    )
                    loss = loss + cfg.temporal_weight * (d**2).sum(dim=1)
            with torch.no_grad():
                if best_loss is None:
                    better = torch.ones_like(loss, dtype=torch.bool)
                    best_state, best_loss = cur.detach(), loss.detach().clone()
                else:
                    better = loss < best_loss
                    best_state = BodyState.where(better, cur.detach(), best_state)
                    best_loss = torch.where(better, loss.detach(), best_loss)
            if final:
                if bool(better.all()):
                    last = _Evaluation(total.detach(), lik, joints.detach())
                break
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
        return best_state, best_loss, last

    def _optimise_starts(
        self,
        starts: list[BodyState],  # S starts of the same B bodies
        features: torch.Tensor,  # [B, C, H, W]
        camera: Camera,
        free: tuple[str, ...],
        steps: int,
        lr: float,
        pose_anchors: list[torch.Tensor | None],  # S x [B, 69] (or None)
        anchor: BodyState | None = None,  # the same for every start
    ) -> tuple[list[tuple[BodyState, torch.Tensor]], _Evaluation | None]:
        """:meth:`_optimise` from several starts at once, as one batch of S x B bodies. The loss
        is per body and Adam elementwise, so this is S separate runs (equal up to float
        rounding) at the cost of one wider batch: 1.4x faster than two runs for S = 2, B = 1 on
        one thread (``python -m benchmarks.fit``). Returns (best state, its loss) per start and,
        for S = 1, :meth:`_optimise`'s evaluation."""
        S, B = len(starts), starts[0].batch
        if S == 1:
            st, loss, ev = self._optimise(starts[0], features, camera, free, steps, lr,
                                          anchor=anchor, pose_anchor=pose_anchors[0])  # fmt: skip
            return [(st, loss)], ev
        if any(a is None for a in pose_anchors) and any(a is not None for a in pose_anchors):
            raise ValueError("pose_anchors must all be tensors or all None")
        pose_anchor = None if pose_anchors[0] is None else torch.cat(pose_anchors)
        state, loss, _ = self._optimise(
            BodyState.cat(starts), features.repeat(S, 1, 1, 1), camera.repeat(S), free, steps,
            lr, anchor=None if anchor is None else BodyState.cat([anchor] * S),
            pose_anchor=pose_anchor,
        )  # fmt: skip
        out = [(state.select(slice(i * B, (i + 1) * B)), loss[i * B : (i + 1) * B])
               for i in range(S)]  # fmt: skip
        return out, None

    def _part_term(
        self,
        state: BodyState,
        camera: Camera,
        parts: torch.Tensor | None,  # [B, P, H, W] part log-probabilities
    ) -> torch.Tensor | None:  # -> [B] :meth:`part_score` (None without ``parts``)
        if parts is None:
            return None
        with torch.no_grad():
            return self.part_score(state, camera, parts)

    def _hypothesis_score(
        self,
        loss: torch.Tensor,  # [B] a hypothesis's objective
        term: torch.Tensor | None,  # [B] its :meth:`_part_term` (None: loss alone)
    ) -> torch.Tensor:  # -> [B] what hypotheses are compared on
        """``loss`` + ``part_weight`` x part term (``loss`` alone without one)."""
        return loss if term is None else loss + self.config.part_weight * term

    def _best_start(
        self,
        fitted: list[tuple[BodyState, torch.Tensor]],  # S x (fitted start, its loss [B])
        anchors: list[torch.Tensor | None],  # S x [B, 69] pose anchor of each start (or None)
        camera: Camera,
        parts: torch.Tensor | None,  # [B, P, H, W] part log-probabilities (None: loss alone)
    ) -> tuple[BodyState, torch.Tensor | None, list[torch.Tensor] | None]:
        """Per body, the fitted start with the lowest :meth:`_hypothesis_score` (the loss alone
        for a single start), its pose anchor and every start's part term (S x [B]; None for a
        single start or without ``parts``)."""
        (best, _), best_anchor = fitted[0], anchors[0]
        if len(fitted) == 1:
            return best, best_anchor, None
        terms = [self._part_term(st, camera, parts) for st, _ in fitted]
        scores = [self._hypothesis_score(loss, t) for (_, loss), t in zip(fitted, terms)]
        best_score = scores[0]
        for (state, _), score, anchor in zip(fitted[1:], scores[1:], anchors[1:], strict=True):
            better = score < best_score
            best = BodyState.where(better, state, best)
            best_score = torch.where(better, score, best_score)
            if anchor is not None:
                best_anchor = torch.where(better[:, None], anchor, best_anchor)
        return best, best_anchor, None if parts is None else terms

    def _finish(
        self,
        state: BodyState,
        features: torch.Tensor,
        camera: Camera,
        steps: int,
        evaluation: _Evaluation | None = None,
        pose_anchor: torch.Tensor | None = None,  # [B, 69]
    ) -> FitResult:
        cfg = self.config
        if evaluation is None:
            with torch.no_grad():
                evaluation = _Evaluation(*self.objective(state, features, camera, pose_anchor))
        total, lik, joints = evaluation
        coverage = (lik.obj != 0).sum(dim=(1, 2))  # pixels the render reaches
        frac = lik.occluded_fraction
        lost = (frac > cfg.lost_fraction) | (coverage < cfg.lost_min_coverage)
        return FitResult(
            state=state.detach(),
            loss=total,
            likelihood=lik.loss,
            occlusion=lik.occluded,
            occluded_fraction=frac,
            coverage=coverage,
            occluded=(frac > cfg.occluded_fraction),
            lost=lost,
            joints=joints,
            steps=steps,
        )

    def cold_start(
        self,
        init: BodyState,
        features: torch.Tensor,  # [B, C, H, W] unit features
        camera: Camera,
        part_logits: torch.Tensor | None = None,  # [B, P, H, W] part head's logits
    ) -> FitResult:
        """Full schedule from the regression head's estimate (betas stay fixed). With
        ``part_logits`` the hypotheses are compared on objective + ``part_weight`` x
        :meth:`part_score`."""
        parts = self._check_inputs(init, features, camera, part_logits)
        cfg = self.config
        starts = [init.detach()]
        pelvis = self.body.rest_joints(init.betas)[:, 0]
        if cfg.flip_hypothesis:
            starts.append(flip_front_back(init.detach(), pelvis))
        if cfg.turn_hypotheses:
            starts += [turn_about_vertical(init.detach(), pelvis, a) for a in (90.0, -90.0)]
        choice_parts = parts if len(starts) > 1 else None  # (one start: nothing to choose)
        # stage 1 from every start; each start anchors the body pose at itself (flip: mirrored)
        fitted, _ = self._optimise_starts(
            starts, features, camera, ("global_orient", "transl"), cfg.stage1_steps, cfg.lr,
            pose_anchors=[s.body_pose for s in starts],
        )  # fmt: skip
        stage1 = [(s1, self._hypothesis_score(loss, self._part_term(s1, camera, choice_parts))
                   if cfg.stage2_hypotheses else None, s.body_pose)
                  for (s1, loss), s in zip(fitted, starts, strict=True)]  # fmt: skip
        keep = len(starts)
        if 0 < cfg.stage2_hypotheses < len(starts):  # only the best starts go on, per body
            keep = cfg.stage2_hypotheses
            order = torch.stack([x[1] for x in stage1]).argsort(dim=0)  # [S, B]
            chosen = []
            for j in range(keep):
                idx = order[j]
                st = BodyState.choose([x[0] for x in stage1], idx)
                anchor = torch.stack([x[2] for x in stage1])[idx, torch.arange(len(idx))]
                chosen.append((st, None, anchor))
            stage1 = chosen
        anchors = [x[2] for x in stage1]
        fitted, evaluation = self._optimise_starts(
            [x[0] for x in stage1], features, camera, ("global_orient", "body_pose"),
            cfg.stage2_steps, cfg.lr, pose_anchors=anchors,
        )  # fmt: skip
        best_state, best_anchor, terms = self._best_start(fitted, anchors, camera, choice_parts)
        steps = len(starts) * cfg.stage1_steps + keep * cfg.stage2_steps
        result = self._finish(best_state, features, camera, steps, evaluation, best_anchor)
        if len(fitted) > 1:
            loss = torch.cat([x.detach() for _, x in fitted])  # [S*B]
            term = torch.full_like(loss, float("nan")) if terms is None else torch.cat(terms)
            result = replace(
                result,
                hypotheses=BodyState.cat([st for st, _ in fitted]).detach(),
                hypothesis_scores=torch.stack([loss, term], dim=1),
            )
        return result

    def warm_start(
        self,
        prev: BodyState,
        features: torch.Tensor,
        camera: Camera,
        velocity: BodyState | None = None,  # per-frame change of the parameters at prev
        steps: int | None = None,
        regression: BodyState | None = None,  # this frame's regression estimate
        part_logits: torch.Tensor | None = None,  # [B, P, H, W] part head's logits
    ) -> FitResult:
        """A few Adam steps on global orient, body pose and translation from ``prev``; with
        ``regression`` the body pose is also pulled towards its body pose
        (``FitConfig.regression_prior_weight``) and the start's body pose blended towards it
        (``FitConfig.warm_pose_blend``). With ``FitConfig.warm_orient_hypothesis`` the same
        steps also run from the start with the regression's global orientation, and each body
        keeps the better of the two on objective (+ ``part_weight`` x :meth:`part_score` with
        ``part_logits``); ``steps`` then counts both."""
        cfg = self.config
        # part log-probabilities only where they are used (every frame of every track otherwise)
        hypotheses = cfg.warm_orient_hypothesis or cfg.warm_flip_hypothesis
        parts = self._check_inputs(prev, features, camera, part_logits if hypotheses else None)
        start = prev.detach()
        if velocity is not None and cfg.extrapolate > 0:
            start = extrapolate(start, velocity, cfg.extrapolate)
        pose_anchor = None
        if regression is not None:
            if regression.batch != prev.batch:
                raise ValueError(f"regression has {regression.batch} bodies, prev {prev.batch}")
            pose_anchor = regression.body_pose.detach()
            a = cfg.warm_pose_blend
            if a > 0:
                start = replace(start, body_pose=(1.0 - a) * start.body_pose + a * pose_anchor)
        n = cfg.warm_steps if steps is None else steps
        free = ("global_orient", "body_pose", "transl")
        starts = [start]
        if (cfg.warm_orient_hypothesis and regression is not None) and not torch.equal(
            regression.global_orient, start.global_orient
        ):  # (not for a start from the regression itself: the same start twice)
            starts.append(replace(start, global_orient=regression.global_orient.detach()))
        anchors = [pose_anchor] * len(starts)
        if cfg.warm_flip_hypothesis:  # the front/back flip of the track (anchor: mirrored too)
            pelvis = self.body.rest_joints(start.betas)[:, 0]
            starts.append(flip_front_back(start, pelvis))
            anchors.append(None if regression is None else
                           flip_front_back(regression.detach(), pelvis).body_pose)  # fmt: skip
        fitted, evaluation = self._optimise_starts(
            starts, features, camera, free, n, cfg.warm_lr, anchors, anchor=start
        )
        state, best_anchor, _ = self._best_start(fitted, anchors, camera, parts)
        return self._finish(state, features, camera, len(starts) * n, evaluation, best_anchor)
