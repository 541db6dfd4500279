"""The regression head against the mean-pose baseline, on many clean frames.

The head is cheap (one network pass a frame), so it can be scored on far more frames than the
fits: with the full run's 160 frames (20 sequences of 8) its PA-MPJPE moved by several percent
between samples of frames, about the size of the margins it is judged by. :func:`head_accuracy`
scores the head (plain and flip test-time averaged, ``engines.mirror``) and the mean-pose
baseline (``Evaluator.run_mean_pose``) on every frame of the given clean sequences, and gives
the head's PA-MPJPE reduction against the baseline, ``1 - head / mean_pose``, with a 95%
interval from a bootstrap over sequences (the frames of one sequence share a texture, a
background and a stretch of one motion, so they are not independent).
"""

from __future__ import annotations

import numpy as np

from engines.evaluation.runner import (
    Evaluator,
    MethodOutput,
    ProtocolFrames,
    build_protocol,
    score,
)
from engines.evaluation.samples import EvalSequence
from engines.metrics import pa_mpjpe

__all__ = ["head_accuracy", "per_frame_pa_mpjpe", "reduction_interval"]


def per_frame_pa_mpjpe(o: MethodOutput, f: ProtocolFrames) -> np.ndarray:  # -> [N] mm
    """PA-MPJPE of each scored frame (``metrics.pa_mpjpe`` on that frame's visible joints;
    NaN where none is visible)."""
    gt, vis = f.joints3d[o.index], f.visible[o.index]
    out = np.full(len(o.index), np.nan)
    for n in range(len(o.index)):
        if vis[n].any():
            out[n] = pa_mpjpe(o.joints3d[n : n + 1], gt[n : n + 1], vis[n : n + 1])
    return out


def reduction_interval(
    a: list[np.ndarray],  # per sequence: method A's per-frame errors [T_s]
    b: list[np.ndarray],  # per sequence: baseline B's on the same frames [T_s]
    n_boot: int = 2000,
    seed: int = 0,
) -> list[float]:
    """95% bootstrap interval of ``1 - mean(a) / mean(b)``, resampling whole sequences (the
    frames of a drawn sequence enter together, A's and B's paired). Non-finite frames (either
    method) are dropped."""
    if len(a) != len(b) or not a:
        raise ValueError("reduction_interval needs one array of each method per sequence")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    sa, sb, n = np.zeros(len(a)), np.zeros(len(a)), np.zeros(len(a))
    for k, (x, y) in enumerate(zip(a, b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape:
            raise ValueError(f"sequence {k}: {x.shape} errors against {y.shape}")
        ok = np.isfinite(x) & np.isfinite(y)
        sa[k], sb[k], n[k] = x[ok].sum(), y[ok].sum(), ok.sum()
    if not n.any():
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(a), size=(n_boot, len(a)))  # [n_boot, n_seq]
    ratio = 1.0 - sa[draw].sum(1) / np.maximum(sb[draw].sum(1), 1e-12)
    lo, hi = np.percentile(ratio, [2.5, 97.5])
    return [round(float(lo), 4), round(float(hi), 4)]


def head_accuracy(ev: Evaluator, seqs: list[EvalSequence], flip: bool = True) -> dict:
    """Regression head (and, with ``flip``, its flip test-time average) and the mean-pose
    baseline on every frame of ``seqs`` (clean): their scores (``runner.score``), the numbers
    of sequences and frames, and per head ``pa_reduction`` (``1 - PA-MPJPE / the mean pose's``)
    with ``pa_reduction_ci95``."""
    if not seqs:
        raise ValueError("head_accuracy needs at least one sequence")
    rng = np.random.default_rng(0)  # clean frames draw nothing; build_protocol wants one
    pfs = [build_protocol(ev, s, "clean", rng) for s in seqs]
    reg_out, regs = zip(*(ev.run_regression(pf, flip=False) for pf in pfs))
    methods = {"regression": list(reg_out)}
    if flip:
        methods["regression_flip"] = [ev.run_regression(pf, flip=True)[0] for pf in pfs]
    base = [ev.run_mean_pose(pf, r) for pf, r in zip(pfs, regs)]
    base_pa = [per_frame_pa_mpjpe(o, f) for o, f in zip(base, pfs)]
    out: dict = {"mean_pose": score(base, pfs)}
    for name, outputs in methods.items():
        r = score(outputs, pfs)
        r["pa_reduction"] = round(1.0 - r["pa_mpjpe"] / out["mean_pose"]["pa_mpjpe"], 4)
        pa = [per_frame_pa_mpjpe(o, f) for o, f in zip(outputs, pfs)]
        r["pa_reduction_ci95"] = reduction_interval(pa, base_pa)
        out[name] = r
    out["sequences"] = len(pfs)
    out["frames"] = int(sum(len(pf.images) for pf in pfs))
    return out
