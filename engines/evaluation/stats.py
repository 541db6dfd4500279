"""Paired comparison of two methods on the same frames: is one better, beyond the sampling noise?

With tens of frames per protocol a method's mean error moves by 10-20% between samples of
frames, so comparing two means says little. Both methods are scored on the same frames, so the
per-frame difference cancels what the frames share; its bootstrap interval says whether it is
real.

Frames of one sequence are not independent: a tracker that starts a sequence wrong (a flipped
body) stays wrong for all of it, and one occluder texture or background serves a whole
sequence. So the interval comes from a two-stage bootstrap: sequences are resampled, then
frames within each drawn sequence (Davison & Hinkley 1997, s3.8). With one sequence it is the
plain bootstrap over frames; with many short, correlated sequences it is wider than that, which
is the point.
"""

from __future__ import annotations

import numpy as np

from engines.evaluation.runner import MethodOutput, ProtocolFrames, per_sample_mpjpe

__all__ = ["paired_difference", "per_frame_mpjpe", "two_stage_bootstrap"]


def per_frame_mpjpe(outputs: list[MethodOutput], frames: list[ProtocolFrames]) -> np.ndarray:
    """Root-aligned MPJPE (mm) of every scored frame, sequences in order: [N] (NaN: no visible
    joint)."""
    if len(outputs) != len(frames):
        raise ValueError("per_frame_mpjpe needs one MethodOutput per ProtocolFrames")
    return np.concatenate([
        per_sample_mpjpe(o.joints3d, f.joints3d[o.index], f.visible[o.index])
        for o, f in zip(outputs, frames)
    ])  # fmt: skip


def two_stage_bootstrap(
    groups: list[np.ndarray], n_boot: int = 2000, seed: int = 0
) -> np.ndarray:  # groups: per-sequence values [T_s] -> [n_boot]
    """Bootstrap replicates of the mean of all values: draw len(groups) groups with
    replacement, then, in each drawn group, as many of its values with replacement; each
    replicate is the mean of the drawn values. Empty groups are dropped."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    groups = [np.asarray(g, np.float64) for g in groups if len(g)]
    if not groups:
        raise ValueError("two_stage_bootstrap needs at least one non-empty group")
    rng = np.random.default_rng(seed)
    n = np.array([len(g) for g in groups])
    pad = np.zeros((len(groups), int(n.max())))
    for k, g in enumerate(groups):
        pad[k, : len(g)] = g
    total = np.zeros(n_boot)
    count = np.zeros(n_boot)
    for _ in range(len(groups)):  # one drawn group per pass, all replicates at once
        s = rng.integers(0, len(groups), size=n_boot)  # [n_boot]
        j = np.arange(pad.shape[1])
        pick = np.floor(rng.random((n_boot, pad.shape[1])) * n[s, None]).astype(np.int64)
        used = j[None, :] < n[s, None]  # [n_boot, T_max]
        total += np.where(used, pad[s[:, None], pick], 0.0).sum(axis=1)
        count += n[s]
    return total / count


def paired_difference(
    a: list[MethodOutput],
    b: list[MethodOutput],
    frames: list[ProtocolFrames],
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, float | list[float] | int]:
    """Mean per-frame MPJPE of ``a`` minus ``b`` (mm; negative: ``a`` is better), its 95%
    two-stage bootstrap interval (sequences, then frames within them), the share of frames
    where ``a`` is better, and the numbers of frames and sequences.

    ``a`` and ``b`` must score the same frames of every sequence."""
    if not (len(a) == len(b) == len(frames)):
        raise ValueError("paired_difference needs one output of each method per sequence")
    for oa, ob in zip(a, b):
        if not np.array_equal(oa.index, ob.index):
            raise ValueError("paired_difference needs both methods on the same frames")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    per_seq = []
    for oa, ob, f in zip(a, b, frames):
        d = per_frame_mpjpe([oa], [f]) - per_frame_mpjpe([ob], [f])
        per_seq.append(d[np.isfinite(d)])
    d = np.concatenate(per_seq)
    if d.size == 0:
        return {"mean_mm": float("nan"), "ci95_mm": [float("nan")] * 2, "a_better": float("nan"),
                "frames": 0, "sequences": 0}  # fmt: skip
    boot = two_stage_bootstrap(per_seq, n_boot, seed)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return {
        "mean_mm": round(float(d.mean()), 2),
        "ci95_mm": [round(float(lo), 2), round(float(hi), 2)],
        "a_better": round(float((d < 0).mean()), 3),
        "frames": int(d.size),
        "sequences": sum(1 for x in per_seq if x.size),
    }
