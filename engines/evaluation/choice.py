"""Replaying the cold start's choice between its hypotheses under other scores (a diagnostic).

The cold start fits every start (the regression's estimate, its front/back flip, ...) on the
objective alone and only then keeps, per body, the one with the lowest objective +
``FitConfig.part_weight`` x part term (``NBVFitter._best_start``). With the default
``stage2_hypotheses = 0`` the fitted hypotheses do not depend on ``part_weight``, so choosing
from their stored scores (``FitResult.hypothesis_scores``) with another weight gives exactly the
cold fit that weight would give, without fitting again. ``bias`` adds a fixed amount to the
score of every start but the first (the regression's): a positive bias keeps the regression's
facing unless another start is better by more than that. With ``stage2_hypotheses > 0`` stage 1
already chose with the configured weight, and the replay only redoes the final choice.
"""

from __future__ import annotations

import numpy as np

from .runner import MethodOutput, ProtocolFrames, score


def _choice(o: MethodOutput, part_weight: float, bias: float) -> np.ndarray:  # -> [N]
    """Per frame, the hypothesis with the lowest objective + ``part_weight`` x part term
    (+ ``bias`` for every start but the first)."""
    if o.hypotheses is None or o.hypothesis_scores is None:
        raise ValueError("replay_choice needs cold fits with several scored hypotheses")
    sc = np.asarray(o.hypothesis_scores, np.float64)  # [N, S, 2]
    if sc.ndim != 3 or sc.shape[:2] != o.hypotheses.shape[:2] or sc.shape[2] != 2:
        raise ValueError(
            f"hypothesis_scores must be [N, S, 2] = {(*o.hypotheses.shape[:2], 2)}, got {sc.shape}"
        )
    total = sc[..., 0].copy()  # [N, S]
    if part_weight != 0.0:
        if np.isnan(sc[..., 1]).any():
            raise ValueError("these fits have no part terms (run with the part head)")
        total += part_weight * sc[..., 1]
    total[:, 1:] += bias
    return np.argmin(total, axis=1)


def replay_choice(
    outputs: list[MethodOutput], part_weight: float, bias: float = 0.0
) -> list[MethodOutput]:
    """The cold fits with each frame's hypothesis chosen by objective + ``part_weight`` x part
    term (+ ``bias`` for every start but the first)."""
    return [o.choose(_choice(o, part_weight, bias)) for o in outputs]


def choice_sweep(
    outputs: list[MethodOutput],
    frames: list[ProtocolFrames],
    part_weights: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0),
    biases: tuple[float, ...] = (-0.1, -0.05, -0.02, 0.0, 0.02, 0.05, 0.1),
) -> dict:
    """MPJPE and PA-MPJPE (mm, as :func:`score`) of the replayed choice on a grid:
    ``{"part_weight": [W], "bias": [A], "mpjpe": [W][A], "pa_mpjpe": [W][A],
    "flip_share": [W][A]}``, ``flip_share`` the fraction of frames that keep another start
    than the first."""
    res = {"part_weight": list(part_weights), "bias": list(biases)}
    mp, pa, share = [], [], []
    for w in part_weights:
        row_mp, row_pa, row_sh = [], [], []
        for b in biases:
            best = [_choice(o, w, b) for o in outputs]  # [N] per sequence
            s = score([o.choose(k) for o, k in zip(outputs, best, strict=True)], frames)
            row_mp.append(round(s["mpjpe"], 2))
            row_pa.append(round(s["pa_mpjpe"], 2))
            row_sh.append(round(float(np.mean(np.concatenate(best) > 0)), 3))
        mp.append(row_mp)
        pa.append(row_pa)
        share.append(row_sh)
    res.update(mpjpe=mp, pa_mpjpe=pa, flip_share=share)
    return res
