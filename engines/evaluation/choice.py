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

:func:`choice_accuracy` says which cue picks the right hypothesis on the frames where the
choice matters (the hypotheses' errors differ by more than a margin), and how often every cue
points the same wrong way (then no weighting of them can choose better).
"""

from __future__ import annotations

import numpy as np

from .runner import MethodOutput, ProtocolFrames, hypothesis_errors, score


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


def choice_accuracy(
    outputs: list[MethodOutput],
    frames: list[ProtocolFrames],
    part_weight: float,
    margin_mm: float = 50.0,
) -> dict:
    """Which cue keeps the best hypothesis (nearest the ground truth, as ``oracle``) on the
    "decisive" frames, those whose best and worst hypotheses differ by more than ``margin_mm``
    of root-aligned MPJPE. Shares of the decisive frames:

    - ``chosen``: the cold fit's choice (objective + ``part_weight`` x part term) is the best;
    - ``objective`` / ``part``: the objective alone / the part term alone picks the best;
    - ``neither``: the objective and the part term both pick a worse hypothesis;
    - ``first``: the first start (the regression's facing) is the best.

    ``part`` and ``neither`` are None without part terms (fits without the part head)."""
    if len(outputs) != len(frames):
        raise ValueError("choice_accuracy needs one MethodOutput per ProtocolFrames")
    picks = [_choice(o, 0.0, 0.0) for o in outputs]  # objective alone (checks the scores)
    has_parts = not any(np.isnan(o.hypothesis_scores[..., 1]).any() for o in outputs)
    best, chosen, obj, part = [], [], [], []
    for o, f, obj_pick in zip(outputs, frames, picks, strict=True):
        err = hypothesis_errors(o, f)  # [N, S]
        e = np.nan_to_num(err)  # (frames with a NaN error are left out)
        keep = np.isfinite(err).all(1) & (np.ptp(e, axis=1) > margin_mm)
        best.append(np.argmin(e, 1)[keep])
        chosen.append(_choice(o, part_weight if has_parts else 0.0, 0.0)[keep])
        obj.append(obj_pick[keep])
        part.append(np.argmin(np.nan_to_num(o.hypothesis_scores[..., 1]), 1)[keep])
    best, chosen, obj, part = (np.concatenate(x) for x in (best, chosen, obj, part))
    n = len(best)

    def share(hit: np.ndarray) -> float | None:
        return round(float(np.mean(hit)), 3) if n else None

    return {
        "margin_mm": float(margin_mm),
        "frames": int(sum(len(o.index) for o in outputs)),
        "decisive": n,
        "chosen": share(chosen == best),
        "objective": share(obj == best),
        "part": share(part == best) if has_parts else None,
        "neither": share((obj != best) & (part != best)) if has_parts else None,
        "first": share(best == 0),
    }
