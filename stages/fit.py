"""Fit stage: per-track NBV fitting, warm-started from the previous frame ("track by fit").

Consumes frames from the features stage (per-person ``extras``: ``features``, ``pose6d``,
``betas``, ``cam``, ``crop_K``; frame ``extras["camera_K"]``, see stages/features.py). Per frame:

1. the regression head's estimate of every person (engines/tracking.py ``regression_init``),
   projected into the frame, is associated with the stage's tracks (box IoU + 2D joint distance
   + the upstream id, Hungarian); unmatched people start new tracks with fresh ids;
2. tracks with a usable previous fit are warm-started (one batched ``warm_start``); new tracks,
   tracks marked ``lost`` and (``recover_lost``) warm fits that come out lost are fitted from the
   regression head (one batched ``cold_start`` with the stage's short schedule);
3. a confirmed track (fitted not-lost before) whose fit comes out lost is held at its last body
   as ``occluded`` for up to ``coast_frames`` frames; two people whose fitted bodies overlap
   (``duplicate_iou``) are one person: the worse-explained one is dropped;
4. each person gets its SMPL fields (frame camera), 3D/2D joints, likelihood, state
   (``tracking`` / ``occluded``: much of the body explained by clutter / ``lost``) and the
   stage's track id; the heavy per-person extras are removed;
5. the box of every live track in the next frame is predicted from its fitted body (kernels
   extrapolated by the velocity, projected, boxed) and sent on the ``tracks`` side output as a
   ``TrackFeedback`` with the box's velocity; a prediction carries the upstream (detect stage)
   id it came with, so the detector can follow it; the feedback's ``lost`` lists the upstream ids
   of boxes no fit ever explained and of merged duplicates, for the detector to drop. Tracks
   unseen for ``association.max_misses`` frames are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from engines.body import BodyModel
from engines.body_state import BodyState
from engines.fit_config import FitConfig
from engines.fitter import FitResult, NBVFitter
from engines.model import load_model
from engines.render import Camera
from engines.tracking import (
    AssociationConfig,
    Track,
    TrackSet,
    box_from_points,
    extrapolate,
    iou_matrix,
    project_points,
    regression_init,
    visible_fraction,
)
from engines.train.step import feature_camera
from pipeline.messages import FrameMessage, Message, TrackFeedback, TrackPrediction
from stages.base import Stage
from stages.features import resolve_model

#: FitConfig values of the live pipeline (the engine's defaults are the offline schedule).
FIT_DEFAULTS: dict[str, Any] = {
    "stage1_steps": 5,
    "stage2_steps": 10,
    "flip_hypothesis": False,
    "warm_steps": 4,
    "extrapolate": 0.5,
    # off live: twice the warm steps, and the fit is the pipeline's slowest stage (37.5 ms a
    # frame here, benchmarks/results/pipeline.json). On the val split (warm MPJPE mm, clean /
    # occ / AdvOcc@80, extrapolate 0.5): 4 steps 136.4 / 173.3 / 398.0; 2 + 2 with it 144.3 /
    # 169.4 / 384.6; 4 + 4 135.1 / 170.6 / 377.1. Turn it on (fit: {warm_orient_hypothesis:
    # true}) for recorded video or fast-turning subjects where the frame rate allows. With both
    # starts in one batch (NBVFitter._optimise_starts) it still costs, on the sample clip here
    # (run_stream.py, medians of 3 interleaved runs): 14.1 -> 12.2 fps, fit p50 36.6 -> 55.6 ms
    "warm_orient_hypothesis": False,
    "warm_flip_hypothesis": False,  # off live for the same reason (one more start)
}
_HEAVY = ("features", "pose6d", "betas", "cam", "crop_K", "crop_window", "part_logits")
_NEEDED = ("features", "pose6d", "betas", "cam", "crop_K")


@dataclass
class FitParams:
    model: str = ""  # model bundle; "" = engines/data/nbf_model (same as the features stage)
    body_model: str = ""  # SMPL-format .npz; "" = the shipped free body model
    fit: dict[str, Any] = field(default_factory=dict)  # FitConfig overrides of FIT_DEFAULTS
    association: AssociationConfig = field(default_factory=AssociationConfig)
    recover_lost: bool = True  # a warm fit that comes out lost is redone from the regressor
    # A confirmed track (fitted as tracking/occluded before) whose fit comes out lost, e.g.
    # behind a large occluder, is held at its last body and reported occluded for up to
    # coast_frames frames (its box is still predicted, the next frame warm-starts from it);
    # then it is reported lost. While held, the regressor re-init is tried every recover_every.
    coast_frames: int = 15
    recover_every: int = 5
    duplicate_iou: float = 0.5  # two fitted bodies overlapping more than this are one person
    box_margin: float = 0.05  # predicted box = projected body box grown by this per side
    predict_ahead: float = 1.0  # frames of velocity added to the fitted body for the next box
    keep_extras: bool = False  # keep the per-person crop data (debugging)
    torch_threads: int = 1  # torch intra-op threads, process-wide (0: leave torch's default)

    def __post_init__(self) -> None:
        self.fit_config()  # unknown keys / wrong types raise ValueError
        if self.box_margin < 0 or self.predict_ahead < 0:
            raise ValueError("box_margin, predict_ahead: must be >= 0")
        if self.coast_frames < 0 or self.recover_every < 1:
            raise ValueError("coast_frames: must be >= 0; recover_every: must be >= 1")
        if self.torch_threads < 0:
            raise ValueError("torch_threads: must be >= 0")

    def fit_config(self) -> FitConfig:
        return FitConfig.from_dict({**FIT_DEFAULTS, **self.fit})


def select_camera(camera: Camera, index: list[int]) -> Camera:
    """The per-body camera rows ``index`` of a batched camera."""
    idx = torch.as_tensor(index, dtype=torch.long)
    return Camera(camera.fx[idx], camera.fy[idx], camera.cx[idx], camera.cy[idx],
                  camera.width, camera.height)  # fmt: skip


class FitStage(Stage):
    Params = FitParams
    side_outputs = ("tracks",)

    @classmethod
    def preflight(cls, params: FitParams) -> None:
        resolve_model(params.model)
        if params.body_model:
            from pathlib import Path

            if not Path(params.body_model).expanduser().is_file():
                raise FileNotFoundError(f"body_model: {params.body_model} does not exist")

    def setup(self) -> None:
        p = self.params
        if p.torch_threads:  # on a loaded CPU one thread avoids pool contention (~8x here)
            torch.set_num_threads(p.torch_threads)
        bundle = load_model(resolve_model(p.model))
        self.body = BodyModel.from_file(p.body_model) if p.body_model else BodyModel.default()
        self.nbv = bundle.build_nbv(self.body)
        cfg = p.fit_config()
        clutter = bundle.clutter(cfg.clutter_components)
        self.fitter = NBVFitter(self.body, self.nbv, bundle.kernel_table(), clutter, cfg)
        self.input_size = bundle.net.config.input_size
        self.tracks = TrackSet(p.association)
        self._warm_up()
        self.stats = {"warm": 0, "cold": 0, "recovered": 0, "held": 0, "merged": 0}
        self._rejected: list[int] = []  # upstream ids to drop (duplicates), sent as feedback
        self._one_vertex = torch.zeros(1, dtype=torch.long)

    def _warm_up(self) -> None:
        """One short fit on a blank map, so the first frame does not pay the one-time costs
        (loading the C++ ops, torch.optim's first-use imports: ~1.5 s here)."""
        S = self.input_size
        C = self.fitter.feature_dim
        h = S // 4
        feats = torch.nn.functional.normalize(torch.ones(1, C, h, h), dim=1)
        K = torch.tensor([[[2.0 * S, 0.0, S / 2], [0.0, 2.0 * S, S / 2], [0.0, 0.0, 1.0]]])
        cam = feature_camera(K, S // h, S)
        state = BodyState(
            torch.tensor([[3.14159, 0.0, 0.0]]), torch.zeros(1, 69),
            torch.zeros(1, self.body.num_betas), torch.tensor([[0.0, 0.2, 4.0]]),
        )  # fmt: skip
        self.fitter.warm_start(state, feats, cam, steps=1)

    # ------------------------------------------------------------------ fitting
    def _fit(
        self,
        init: BodyState,
        feats: torch.Tensor,
        camera: Camera,
        prior: list[Track | None],
        parts: torch.Tensor | None = None,  # [B, P, h, w] part logits (the fits' hypotheses)
    ) -> tuple[BodyState, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, list[bool]]:
        """Fit all bodies; returns (state, joints [B,24,3], likelihood, occluded_fraction,
        label codes [B] (0 tracking, 1 occluded, 2 lost), whether each result is a warm fit)."""
        B = init.batch
        warm = [t is not None and t.warm for t in prior]
        state = init.detach()
        joints = torch.zeros(B, 24, 3)
        lik = torch.zeros(B)
        frac = torch.zeros(B)
        code = torch.zeros(B, dtype=torch.long)
        loss = torch.full((B,), float("inf"))

        from_warm = [False] * B

        def store(idx: list[int], r: FitResult, is_warm: bool) -> None:
            for j, i in enumerate(idx):
                if not bool(r.loss[j] < loss[i]):  # a recovery keeps the better of the two
                    continue
                for dst, src in zip(state.as_tuple(), r.state.as_tuple(), strict=True):
                    dst[i] = src[j]
                joints[i], lik[i], frac[i], loss[i] = r.joints[j], r.likelihood[j], \
                    r.occluded_fraction[j], r.loss[j]  # fmt: skip
                code[i] = 2 if bool(r.lost[j]) else (1 if bool(r.occluded[j]) else 0)
                from_warm[i] = is_warm

        warm_idx = [i for i in range(B) if warm[i]]
        cold_idx = [i for i in range(B) if not warm[i]]
        if warm_idx:
            prev = BodyState.cat([prior[i].body for i in warm_idx])
            vel = BodyState.cat([
                prior[i].velocity if prior[i].velocity is not None
                else BodyState(*(torch.zeros_like(x) for x in prior[i].body.as_tuple()))
                for i in warm_idx
            ])  # fmt: skip
            warm_parts = None if parts is None else parts[warm_idx]
            r = self.fitter.warm_start(prev, feats[warm_idx], select_camera(camera, warm_idx),
                                       velocity=vel, regression=init.select(warm_idx),
                                       part_logits=warm_parts)  # fmt: skip
            store(warm_idx, r, True)
            self.stats["warm"] += len(warm_idx)
            if self.params.recover_lost:
                every = self.params.recover_every
                again = [i for j, i in enumerate(warm_idx)  # while held: every n-th frame
                         if bool(r.lost[j]) and (not prior[i].confirmed
                                                 or prior[i].lost_run % every == 0)]  # fmt: skip
                cold_idx += again
                self.stats["recovered"] += len(again)
        if cold_idx:
            r = self.fitter.cold_start(init.select(cold_idx), feats[cold_idx],
                                       select_camera(camera, cold_idx),
                                       None if parts is None else parts[cold_idx])  # fmt: skip
            store(cold_idx, r, False)
            self.stats["cold"] += len(cold_idx)
        return state, joints, lik, frac, code, from_warm

    def _predict(self, tracks: list[Track], K: np.ndarray, width: int, height: int) -> None:
        """Set ``pred_box`` / ``pred_joints2d`` of ``tracks`` for the next frame."""
        live = [t for t in tracks if t.label != "lost" and t.body is not None]
        if not live:
            return
        states = [extrapolate(t.body, t.velocity, self.params.predict_ahead) for t in live]
        with torch.no_grad():
            centres, joints = self.nbv.pose(self.body, *BodyState.cat(states).as_tuple())
        pts = project_points(centres, K)  # [B, K, 2]
        j2d = project_points(joints, K)  # [B, 24, 2]
        for i, t in enumerate(live):
            raw = box_from_points(pts[i], self.params.box_margin)
            t.pred_velocity = None
            gap = t.last_frame - t.pred_frame
            if t.velocity is not None and t.pred_box_raw is not None and gap > 0:
                # box motion per frame between the last two predictions (each "next frame")
                t.pred_velocity = ((raw - t.pred_box_raw) / gap).astype(np.float32)
            t.pred_box_raw, t.pred_frame = raw, t.last_frame
            t.pred_box = box_from_points(pts[i], self.params.box_margin, width, height)
            t.pred_joints2d = j2d[i].astype(np.float32)
            t.pred_visible = visible_fraction(raw, width, height)

    # ------------------------------------------------------------------ messages
    def process(self, msg: Message) -> list[Message]:
        if not isinstance(msg, FrameMessage):
            return [msg]
        people = [q for q in msg.persons if all(k in q.extras for k in _NEEDED)]
        K = msg.extras.get("camera_K")
        if people and K is None:
            raise ValueError("fit: frame has person features but no extras['camera_K'] "
                             "(is the features stage before fit?)")  # fmt: skip
        seen: set[int] = set()
        fitted: list[Track] = []
        if people:
            seen, fitted = self._fit_people(msg, people, np.asarray(K, np.float64))
        self.tracks.miss(seen)
        self._feedback(msg, fitted)
        if not self.params.keep_extras:
            for q in msg.persons:
                for k in _HEAVY:
                    q.extras.pop(k, None)
        return [msg]

    def _fit_people(self, msg: FrameMessage, people: list, K: np.ndarray):
        S = self.input_size
        feats = torch.from_numpy(np.stack([q.extras["features"] for q in people])).float()
        stride = S // feats.shape[-1]
        Kc = torch.from_numpy(np.stack([q.extras["crop_K"] for q in people])).float()
        camera = feature_camera(Kc, stride, S)

        def col(key: str) -> torch.Tensor:
            return torch.from_numpy(np.stack([q.extras[key] for q in people])).float()

        init = regression_init(col("pose6d"), col("betas"), col("cam"), Kc, S)
        with torch.no_grad():  # joints only: skin one vertex, not the mesh
            reg_joints = self.body(*init.as_tuple(), vertex_ids=self._one_vertex).joints
        boxes = np.stack([q.box for q in people]).astype(np.float64)
        sources = np.array([q.track_id for q in people])
        prior = self.tracks.associate(boxes, project_points(reg_joints, K), sources)
        parts = None
        if all("part_logits" in q.extras for q in people):
            parts = col("part_logits")
        state, joints, lik, frac, code, warm = self._fit(init, feats, camera, prior, parts)
        lost_now = [bool(c == 2) for c in code]  # before holding confirmed tracks
        for i, t in enumerate(prior):  # hold confirmed tracks through a short loss
            if (lost_now[i] and t is not None and t.confirmed and t.body is not None
                    and t.joints3d is not None
                    and t.lost_run < self.params.coast_frames):  # fmt: skip
                for dst, src in zip(state.as_tuple(), t.body.as_tuple(), strict=True):
                    dst[i] = src[0]
                joints[i] = torch.from_numpy(np.asarray(t.joints3d, np.float32))
                code[i] = 1
                self.stats["held"] += 1
        j2d = project_points(joints, K).astype(np.float32)
        j3d = joints.detach().numpy().astype(np.float32)
        labels = ("tracking", "occluded", "lost")
        seen, fitted = set(), []
        h, w = msg.image.shape[:2] if msg.image is not None else (0, 0)
        drop = self._duplicates(j2d, lik, code)
        for i in drop:  # the same body fitted twice: keep the better-explained one
            if prior[i] is not None:
                self.tracks.tracks.pop(prior[i].track_id, None)
            if people[i].track_id >= 0:
                self._rejected.append(int(people[i].track_id))
            self.stats["merged"] += 1
        if drop:
            gone = {id(people[i]) for i in drop}
            msg.persons = [q for q in msg.persons if id(q) not in gone]
        for i, q in enumerate(people):
            if i in drop:
                continue
            t = prior[i] or self.tracks.create(q.box, q.track_id)
            label = labels[int(code[i])]
            self.tracks.update(t, msg.index, q.box, state.select([i]), j3d[i], j2d[i], label,
                               float(lik[i]), q.track_id, warm=warm[i],
                               occluded_fraction=float(frac[i]))  # fmt: skip
            t.lost_run = t.lost_run + 1 if lost_now[i] else 0
            t.confirmed = t.confirmed or not lost_now[i]
            seen.add(t.track_id)
            fitted.append(t)
            q.track_id, q.state = t.track_id, label
            q.global_orient = state.global_orient[i].numpy().astype(np.float32)
            q.body_pose = state.body_pose[i].numpy().astype(np.float32)
            q.betas = state.betas[i].numpy().astype(np.float32)
            q.transl = state.transl[i].numpy().astype(np.float32)
            q.joints3d, q.joints2d, q.likelihood = j3d[i], j2d[i], float(lik[i])
        if w and h:
            self._predict(fitted, K, w, h)
        return seen, fitted

    def _duplicates(self, j2d: np.ndarray, lik: torch.Tensor, code: torch.Tensor) -> set[int]:
        """Indices of people whose fitted body boxes (2D joints, ``[N, 24, 2]``) overlap a
        better-explained (lower likelihood loss) one by IoU > ``duplicate_iou``."""
        n = len(j2d)
        if n < 2 or self.params.duplicate_iou >= 1:
            return set()
        boxes = np.stack([box_from_points(j) for j in j2d])
        iou = iou_matrix(boxes, boxes)
        drop: set[int] = set()
        order = sorted(range(n), key=lambda i: (int(code[i]) == 2, float(lik[i])))
        for a, i in enumerate(order):
            if i in drop:
                continue
            for j in order[a + 1 :]:
                if j not in drop and iou[i, j] > self.params.duplicate_iou:
                    drop.add(j)
        return drop

    def _feedback(self, msg: FrameMessage, fitted: list[Track]) -> None:
        preds, lost = [], list(self._rejected)
        self._rejected.clear()
        for t in fitted:
            tid = t.source_id if t.source_id >= 0 else t.track_id
            if t.label == "lost" and not t.confirmed:  # no body ever explained this box
                lost.append(int(tid))
            if t.pred_box is None:
                continue
            conf = (1.0 - t.occluded_fraction) * t.pred_visible
            vel = None if t.pred_velocity is None else t.pred_velocity.copy()
            preds.append(TrackPrediction(tid, t.pred_box.copy(), float(np.clip(conf, 0, 1)),
                                         msg.index, vel))  # fmt: skip
        self.ctx.emit_side("tracks", TrackFeedback(msg.stream_id, msg.index, preds, lost))
