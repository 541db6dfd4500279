"""Run the evaluated methods on protocol samples and score them (DESIGN.md s3 "Fitting", s4).

Methods:

- ``regression``: the feature network's regression head alone (6D rotations -> axis-angle, its
  betas, translation from the weak-perspective camera with the crop focal ``K[0, 0]``; with
  ``Evaluator(regression_flip=True)`` flip test-time averaged, ``engines.mirror``). Every method
  that uses the regression (the AdvOcc search, the fits' starts and pose anchor) uses the same.
- ``cold_fit``: per frame, the fitter's full cold-start schedule from the regression estimate
  (``FitConfig`` defaults, occlusion-robust likelihood); ``cold_fit_plain``: the same with the
  plain likelihood (same learning rate, so only the likelihood differs).
- ``warm_fit`` (``warm_fit@n``): frames in video order; the first frame is a cold fit, every
  later one ``n`` warm-start steps from the previous fit (extrapolated with the last velocity as
  ``FitConfig.extrapolate`` says); when the fit reports ``lost`` it is redone from the regression
  estimate (another ``n`` steps, counted).

``ms_per_frame`` is the median wall time per frame of the method's own work: the network forward
for ``regression`` (batched, divided by the batch), the fitting alone for the fits (the network
time is the regression row's). ``steps`` is the mean number of optimiser steps per frame. For
``warm_fit`` both count the frames after the first (the first is the shared cold fit).
Under AdvOcc the patch is placed per frame at the regression head's worst position, so in video
it jumps from frame to frame (the warm fit sees a new occluder every frame).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from engines.body import BodyModel
from engines.body_state import BodyState, velocity
from engines.featnet import STRIDE, normalize_images
from engines.fit_config import FitConfig
from engines.fitter import NBVFitter
from engines.metrics import JOINTS14, mpjpe, pa_mpjpe, pckh
from engines.mirror import run_flip_averaged
from engines.rotations import matrix_to_axis_angle, rot6d_to_matrix
from engines.tracking import regression_init
from engines.train.step import body_joints_from_rotmats, feature_camera

from .protocols import (
    ADVOCC_SIDES,
    PROTOCOLS,
    advocc_grid,
    advocc_images,
    joints_under_mask,
    joints_under_patch,
    occ_sample,
    patch_texture,
    worst_case,
)
from .samples import EvalSequence

__all__ = [
    "Evaluator",
    "MethodOutput",
    "ProtocolFrames",
    "Regression",
    "build_protocol",
    "hypothesis_errors",
    "per_sample_mpjpe",
    "project",
    "score",
]


@dataclass
class Regression:
    features: torch.Tensor  # [B, D, h, w]
    state: BodyState
    joints: torch.Tensor  # [B, 24, 3] camera frame
    part_logits: torch.Tensor | None = None  # [B, P, h, w] part head (with the features)


@dataclass
class ProtocolFrames:
    """One sequence under one protocol: the images, their visibility and per-frame info."""

    name: str
    images: np.ndarray  # [T, S, S, 3] uint8
    K: np.ndarray  # [T, 3, 3]
    joints3d: np.ndarray  # [T, 24, 3]
    joints2d: np.ndarray  # [T, 24, 2]
    visible: np.ndarray  # [T, 24]
    visible2d: np.ndarray  # [T, 24]
    head_size: np.ndarray  # [T]
    info: list[dict]


@dataclass
class MethodOutput:
    """Predictions of one method on frames ``index`` of one sequence."""

    joints3d: np.ndarray  # [N, 24, 3] camera frame
    ms: np.ndarray  # [N] milliseconds per frame
    steps: np.ndarray  # [N] optimiser steps per frame
    index: np.ndarray  # [N] frame indices into the sequence
    states: BodyState | None = None  # [N] fitted parameters (cold fits)
    timed: np.ndarray | None = None  # [N] bool, frames counted in ms / steps (None: all)
    hypotheses: np.ndarray | None = None  # [N, S, 24, 3] joints of every cold-start hypothesis
    hypothesis_scores: np.ndarray | None = None  # [N, S, 2] their objective and part term

    def choose(self, best: np.ndarray) -> MethodOutput:  # best: [N] hypothesis per frame
        """These frames with hypothesis ``best[n]`` as frame n's prediction (no states)."""
        if self.hypotheses is None:
            raise ValueError("choose needs cold fits with several hypotheses")
        N = len(self.index)
        return replace(self, joints3d=self.hypotheses[np.arange(N), best], states=None)

    def subset(self, keep: np.ndarray) -> MethodOutput:  # keep: [N] bool
        """The predictions of the frames where ``keep`` is true."""
        keep = np.asarray(keep, bool)
        if keep.shape != self.index.shape:
            raise ValueError(f"keep must be [N] = [{len(self.index)}], got {keep.shape}")
        sel = np.flatnonzero(keep)
        return MethodOutput(
            self.joints3d[sel], self.ms[sel], self.steps[sel], self.index[sel],
            None if self.states is None else self.states.select(torch.as_tensor(sel)),
            None if self.timed is None else self.timed[sel],
            None if self.hypotheses is None else self.hypotheses[sel],
            None if self.hypothesis_scores is None else self.hypothesis_scores[sel],
        )  # fmt: skip


def project(joints: np.ndarray, K: np.ndarray) -> np.ndarray:  # [N, J, 3], [N, 3, 3] -> [N, J, 2]
    """Pinhole projection into crop pixels (docs/conventions.md)."""
    z = np.maximum(joints[..., 2:], 1e-6)
    uv = np.einsum("nij,nkj->nki", K, joints / z)
    return uv[..., :2]


def per_sample_mpjpe(
    pred: np.ndarray,  # [N, 24, 3]
    gt: np.ndarray,  # [N, 24, 3] or [24, 3]
    visible: np.ndarray,  # [N, 24] bool
) -> np.ndarray:  # -> [N] mm (NaN: no visible joint)
    """Root-aligned (pelvis) MPJPE of every sample over its visible joints, as ``mpjpe``."""
    g = np.broadcast_to(gt, pred.shape)
    err = np.linalg.norm((pred - pred[:, :1]) - (g - g[:, :1]), axis=-1) * 1000.0
    v = np.asarray(visible, bool)
    n = v.sum(1)
    with np.errstate(invalid="ignore"):
        return np.where(n > 0, (err * v).sum(1) / np.maximum(n, 1), np.nan)


class Evaluator:
    """The network, body model and fitters of one model bundle (``engines.model.ModelBundle``)."""

    def __init__(
        self, bundle, body: BodyModel | None = None, fit_config: FitConfig | None = None,
        batch: int = 16, regression_flip: bool = False,
    ) -> None:  # fmt: skip
        self.net = bundle.net.eval()
        self.regression_flip = bool(regression_flip)  # engines.mirror.flip_average
        self.body = body if body is not None else BodyModel.default()
        self.nbv = bundle.build_nbv(self.body)
        self.size = self.net.config.input_size
        self.batch = max(1, int(batch))
        self.config = fit_config or FitConfig()
        table, clutter = bundle.kernel_table(), bundle.clutter(self.config.clutter_components)
        self.fitter = NBVFitter(self.body, self.nbv, table, clutter, self.config)
        plain = replace(self.config, robust=False)
        self.plain_fitter = NBVFitter(self.body, self.nbv, table, clutter, plain)

    @torch.no_grad()
    def regress(
        self,
        images: np.ndarray,  # [B, S, S, 3] uint8
        K: np.ndarray,  # [B, 3, 3]
        features: bool = True,
        flip: bool | None = None,  # None: the evaluator's regression_flip
    ) -> Regression:
        """Regression-head estimate (in chunks of ``batch``); joints in the crop camera frame.
        With ``flip`` the head's outputs are flip test-time averaged
        (``engines.mirror.flip_average``; features and part logits are the unflipped crops')."""
        flip = self.regression_flip if flip is None else bool(flip)
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[1:] != (self.size, self.size, 3):
            raise ValueError(f"images must be [B, {self.size}, {self.size}, 3], got {images.shape}")
        K = np.asarray(K)
        if K.shape != (len(images), 3, 3):
            raise ValueError(f"K must be [B, 3, 3] = [{len(images)}, 3, 3], got {K.shape}")
        feats, states, joints, parts = [], [], [], []
        run = lambda x: self.net(normalize_images(x))  # noqa: E731
        for i in range(0, len(images), self.batch):
            chunk = images[i : i + self.batch]
            out = run_flip_averaged(run, chunk) if flip else run(chunk)
            Kt = torch.as_tensor(K[i : i + self.batch], dtype=torch.float32)
            st = regression_init(out["pose6d"], out["betas"], out["cam"], Kt, self.size)
            states.append(st)
            R = rot6d_to_matrix(out["pose6d"])  # [b, 24, 3, 3]
            joints.append(body_joints_from_rotmats(self.body, R, st.betas) + st.transl[:, None])
            if features:
                feats.append(out["features"])
                parts.append(out["part_logits"])
        return Regression(
            torch.cat(feats) if features else torch.empty(0),
            BodyState.cat(states),
            torch.cat(joints),
            torch.cat(parts) if features else None,
        )

    def camera(self, K: np.ndarray):  # [B, 3, 3] -> feature-map Camera
        return feature_camera(torch.as_tensor(K, dtype=torch.float32), STRIDE, self.size)

    # ------------------------------------------------------------------ methods
    def run_regression(
        self, pf: ProtocolFrames, flip: bool | None = None
    ) -> tuple[MethodOutput, Regression]:
        t0 = time.perf_counter()
        reg = self.regress(pf.images, pf.K, flip=flip)
        ms = (time.perf_counter() - t0) * 1000.0 / max(1, len(pf.images))
        T = len(pf.images)
        return MethodOutput(reg.joints.numpy(), np.full(T, ms), np.zeros(T), np.arange(T)), reg

    def run_mean_pose(self, pf: ProtocolFrames, reg: Regression) -> MethodOutput:
        """Baseline: the training takes' mean body pose and mean shape, placed with the regression
        head's global orientation and translation (PA-MPJPE ignores the placement)."""
        from engines.train.trainer import mean_pose_6d

        T = len(pf.images)
        R = rot6d_to_matrix(mean_pose_6d())  # [23, 3, 3] (Gram-Schmidt: a proper rotation)
        pose = matrix_to_axis_angle(R).reshape(1, 69).expand(T, 69)
        st = reg.state
        with torch.no_grad():
            j = self.body(st.global_orient, pose, torch.zeros_like(st.betas), st.transl).joints
        return MethodOutput(j.numpy(), np.zeros(T), np.zeros(T), np.arange(T))

    def run_cold(
        self,
        pfs: list[ProtocolFrames],
        regs: list[Regression],
        plain: bool = False,
        every: int = 1,
        batch: int = 8,
        parts: bool = True,
    ) -> list[MethodOutput]:
        """Cold fits of frames ``t % every == 0`` of every sequence, ``batch`` bodies at a time
        (``ms`` per frame = batch wall time / bodies in the batch); ``parts=False`` leaves the
        part head out of the choice between hypotheses."""
        fitter = self.plain_fitter if plain else self.fitter
        jobs = [(s, t) for s, pf in enumerate(pfs) for t in range(0, len(pf.images), every)]
        res_j: dict = {}
        for i in range(0, len(jobs), max(1, batch)):
            chunk = jobs[i : i + max(1, batch)]
            init = BodyState.cat([regs[s].state.select(slice(t, t + 1)) for s, t in chunk])
            feats = torch.cat([regs[s].features[t : t + 1] for s, t in chunk])
            logits = (
                torch.cat([regs[s].part_logits[t : t + 1] for s, t in chunk]) if parts else None
            )
            K = np.stack([pfs[s].K[t] for s, t in chunk])
            t0 = time.perf_counter()
            res = fitter.cold_start(init, feats, self.camera(K), part_logits=logits)
            ms = (time.perf_counter() - t0) * 1000.0 / len(chunk)
            hyp = self._hypothesis_joints(res.hypotheses, len(chunk))  # [b, S, 24, 3] or None
            hs = None
            if res.hypothesis_scores is not None:  # start-major [S*b, 2] -> [b, S, 2]
                hs = res.hypothesis_scores.reshape(-1, len(chunk), 2).transpose(0, 1).numpy()
            for b, key in enumerate(chunk):
                res_j[key] = (res.joints[b].numpy(), ms, res.steps, res.state.select([b]),
                              None if hyp is None else hyp[b],
                              None if hs is None else hs[b])  # fmt: skip
        outs = []
        for s, pf in enumerate(pfs):
            idx = np.arange(0, len(pf.images), every)
            r = [res_j[(s, int(t))] for t in idx]
            hyp = None if r[0][4] is None else np.stack([x[4] for x in r])
            hs = None if r[0][5] is None else np.stack([x[5] for x in r])
            outs.append(MethodOutput(
                np.stack([x[0] for x in r]), np.array([x[1] for x in r]),
                np.array([x[2] for x in r], float), idx, BodyState.cat([x[3] for x in r]),
                hypotheses=hyp, hypothesis_scores=hs,
            ))  # fmt: skip
        return outs

    @torch.no_grad()
    def _hypothesis_joints(self, states: BodyState | None, B: int) -> np.ndarray | None:
        """Joints [B, S, 24, 3] of a cold fit's start-major [S*B] hypotheses (None: one start)."""
        if states is None:
            return None
        _, j = self.nbv.pose(self.body, *states.as_tuple())  # as FitResult.joints
        return j.reshape(-1, B, 24, 3).transpose(0, 1).numpy()

    def run_warm(
        self, pfs: list[ProtocolFrames], regs: list[Regression], steps: int,
        first: list[MethodOutput],
    ) -> list[MethodOutput]:  # fmt: skip
        """Warm fits in video order, sequences of equal length batched together. Frame 0 is the
        cold fit ``first[s]`` (its frame 0: the same computation, shared)."""
        lengths = sorted({len(pf.images) for pf in pfs})
        if len(lengths) > 1:
            out: list = [None] * len(pfs)
            for T in lengths:
                ids = [i for i, pf in enumerate(pfs) if len(pf.images) == T]
                part = self.run_warm([pfs[i] for i in ids], [regs[i] for i in ids], steps,
                                     [first[i] for i in ids])  # fmt: skip
                for i, o in zip(ids, part):
                    out[i] = o
            return out
        T = lengths[0]
        if any(f.states is None or f.index[0] != 0 for f in first):
            raise ValueError("first must be cold fits that include frame 0")
        n = len(pfs)
        prev = BodyState.cat([f.states.select([0]) for f in first])
        joints = [[f.joints3d[0]] for f in first]
        ms = [[f.ms[0]] for f in first]
        nsteps = [[f.steps[0]] for f in first]
        prev2 = None
        for t in range(1, T):
            init = BodyState.cat([r.state.select(slice(t, t + 1)) for r in regs])
            feats = torch.cat([r.features[t : t + 1] for r in regs])
            parts = None
            if all(r.part_logits is not None for r in regs):
                parts = torch.cat([r.part_logits[t : t + 1] for r in regs])
            cam = self.camera(np.stack([pf.K[t] for pf in pfs]))
            t0 = time.perf_counter()
            vel = velocity(prev2, prev) if prev2 is not None else None
            res = self.fitter.warm_start(prev, feats, cam, velocity=vel, steps=steps,
                                         regression=init, part_logits=parts)  # fmt: skip
            used = torch.full((n,), float(res.steps))
            lost = res.lost
            state, jt = res.state, res.joints
            if bool(lost.any()):
                re = self.fitter.warm_start(init, feats, cam, steps=steps, regression=init)
                state = BodyState.where(lost, re.state, state)
                jt = torch.where(lost[:, None, None], re.joints, jt)
                used = used + lost.float() * re.steps
            dt = (time.perf_counter() - t0) * 1000.0 / n
            # no velocity across a re-initialisation
            prev2 = BodyState.where(lost, state, prev) if bool(lost.any()) else prev
            prev = state
            for s in range(n):
                joints[s].append(jt[s].numpy())
                ms[s].append(dt)
                nsteps[s].append(float(used[s]))
        timed = np.arange(T) > 0  # frame 0 is the shared cold fit
        return [
            MethodOutput(
                np.stack(joints[s]),
                np.array(ms[s]),
                np.array(nsteps[s]),
                np.arange(T),
                timed=timed,
            )
            for s in range(n)
        ]

    # ------------------------------------------------------------------ AdvOcc search
    def advocc_worst(
        self,
        image: np.ndarray,  # [S, S, 3]
        K: np.ndarray,  # [3, 3]
        joints3d: np.ndarray,  # [24, 3]
        joints2d: np.ndarray,  # [24, 2]
        visible: np.ndarray,  # [24]
        side224: int,
        rng: np.random.Generator,
        bank,
        grid_step: int = 1,
    ) -> tuple[np.ndarray, np.ndarray, dict]:  # (image [S, S, 3], under [24], info)
        """Try every grid position; keep the one with the regression head's worst MPJPE."""
        grid = advocc_grid(self.size, side224, grid_step)
        tex = patch_texture(rng, grid.side, bank)
        under = joints_under_patch(joints2d, grid.positions, grid.side, self.size)  # [N, 24]
        errs = []
        n = len(grid.positions)
        for i in range(0, n, self.batch):
            idx = np.arange(i, min(n, i + self.batch))
            imgs = advocc_images(image, grid, tex, idx)
            j = self.regress(imgs, np.repeat(K[None], len(idx), 0), features=False).joints
            errs.append(per_sample_mpjpe(j.numpy(), joints3d, visible[None] & ~under[idx]))
        errs = np.concatenate(errs)
        k = worst_case(errs)
        img = advocc_images(image, grid, tex, [k])[0]
        x0, y0 = grid.positions[k]
        info = {"position": [int(x0), int(y0)], "side": grid.side, "n_positions": n,
                "regression_mpjpe": float(errs[k])}  # fmt: skip
        return img, under[k], info


def build_protocol(
    ev: Evaluator,
    seq: EvalSequence,
    protocol: str,
    rng: np.random.Generator,
    bank=None,  # engines.synth.backgrounds.BackgroundBank of held-out images (or None)
    grid_step: int = 1,
) -> ProtocolFrames:
    """Apply a protocol (``protocols.PROTOCOLS``) to every frame of a sequence."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    imgs, vis, vis2, info = [], [], [], []
    for f in seq.frames:
        img, v, v2, inf = f.image, f.visible.copy(), f.visible2d.copy(), {}
        if protocol == "occ":
            if f.silhouette is None:
                raise ValueError("the occ protocol needs frame silhouettes")
            img, mask, cov = occ_sample(rng, f.image, f.silhouette, bank)
            inf = {"coverage": cov, "joints_under": int(joints_under_mask(f.joints2d, mask).sum())}
        elif protocol in ADVOCC_SIDES:
            img, under, inf = ev.advocc_worst(
                f.image, f.K, f.joints3d, f.joints2d, f.visible, ADVOCC_SIDES[protocol], rng,
                bank, grid_step,
            )  # fmt: skip
            v &= ~under
            v2 &= ~under
        imgs.append(img)
        vis.append(v)
        vis2.append(v2)
        info.append(inf)
    fr = seq.frames
    return ProtocolFrames(
        name=seq.name,
        images=np.stack(imgs),
        K=np.stack([f.K for f in fr]),
        joints3d=np.stack([f.joints3d for f in fr]),
        joints2d=np.stack([f.joints2d for f in fr]),
        visible=np.stack(vis),
        visible2d=np.stack(vis2),
        head_size=np.array([f.head_size for f in fr], np.float64),
        info=info,
    )


def oracle(outputs: list[MethodOutput], frames: list[ProtocolFrames]) -> list[MethodOutput]:
    """Diagnostic, not a method: per frame, the cold fit's hypothesis nearest the ground truth
    (root-aligned MPJPE), i.e. the cold fit with a perfect choice between its starts (the
    front/back flip). ``score`` of it against ``cold_fit`` is what that choice costs."""
    if len(outputs) != len(frames):
        raise ValueError("oracle needs one MethodOutput per ProtocolFrames")
    out = []
    for o, f in zip(outputs, frames):
        err = hypothesis_errors(o, f)
        out.append(o.choose(np.argmin(np.where(np.isnan(err), np.inf, err), axis=1)))
    return out


def hypothesis_errors(o: MethodOutput, f: ProtocolFrames) -> np.ndarray:  # -> [N, S] mm
    """Root-aligned MPJPE (:func:`per_sample_mpjpe`) of every hypothesis of a cold fit's frames
    against the ground truth (NaN: no visible joint)."""
    if o.hypotheses is None:
        raise ValueError("hypothesis errors need cold fits with several hypotheses")
    S = o.hypotheses.shape[1]
    gt, vis = f.joints3d[o.index], f.visible[o.index]
    return np.stack([per_sample_mpjpe(o.hypotheses[:, k], gt, vis) for k in range(S)], 1)


def score(outputs: list[MethodOutput], frames: list[ProtocolFrames]) -> dict[str, float]:
    """Metrics over all frames of all sequences (means over visible joints, as ``metrics``)."""
    if len(outputs) != len(frames):
        raise ValueError("score needs one MethodOutput per ProtocolFrames")

    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(f, name)[o.index] for o, f in zip(outputs, frames)])

    pred = np.concatenate([o.joints3d for o in outputs]).astype(np.float64)
    gt, vis, K, gt2, head = (cat(n) for n in ("joints3d", "visible", "K", "joints2d", "head_size"))
    vis2 = cat("visible2d") & np.isfinite(head)[:, None]
    vis2 &= np.isfinite(gt2).all(-1)
    pred2 = project(pred, K)
    timed = np.concatenate(
        [o.timed if o.timed is not None else np.ones(len(o.ms), bool) for o in outputs]
    )
    if not timed.any():  # e.g. one-frame sequences: only the cold first frame
        timed[:] = True
    ms = np.concatenate([o.ms for o in outputs])[timed]
    steps = np.concatenate([o.steps for o in outputs])[timed]
    return {
        "mpjpe": mpjpe(pred, gt, vis),
        "pa_mpjpe": pa_mpjpe(pred, gt, vis),
        "mpjpe14": mpjpe(pred, gt, vis, joints=JOINTS14),
        "pa_mpjpe14": pa_mpjpe(pred, gt, vis, joints=JOINTS14),
        "pckh": pckh(pred2, np.nan_to_num(gt2), np.nan_to_num(head), vis2, joints=JOINTS14),
        "ms_per_frame": float(np.median(ms)) if len(ms) else float("nan"),
        "steps": float(np.mean(steps)) if len(steps) else float("nan"),
        "frames": len(pred),
    }
