"""One NBV fitting step (objective forward + backward): rendered-feature map path vs fused cosine,
the kinematic chain as a torch loop vs the C++ op (``kinematic_chain``), and two starts of one
body as two runs vs one batch of two (``two_starts``: the warm start's orientation hypothesis and
the cold start's flip, :meth:`engines.fitter.NBVFitter._optimise_starts`).

    python -m benchmarks.fit --quick     # B=1 only; last line: one JSON object
    python -m benchmarks.fit             # B=1 and B=4; writes results/fit.json

Scene: the default body (K = 858 kernels, O = 3 bins) in a 48x48 feature map (f = 60 px, 2.6 m
away), C = 64 random unit kernel features, M = 10, one thread. One step = ``NBVFitter.objective``
+ ``loss.sum().backward()`` to global orient, body pose and translation. "old" renders the
[B, O*C, H, W] feature map and takes the cosine in torch (engines.likelihood.feature_likelihood,
the objective before the fused op); "fused" is the current objective (engines.render.render_cosine).
Both are timed interleaved round by round; speedup = old_ms / fused_ms (medians, one run).
max_abs_diff compares the two losses.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from benchmarks.common import emit, environment
from engines.body import BodyModel
from engines.body_state import BodyState
from engines.fitter import NBVFitter, hinge_prior
from engines.likelihood import feature_likelihood
from engines.nbv import NeuralBodyVolume
from engines.render import Camera, render, render_features

RESULTS = Path(__file__).resolve().parent / "results" / "fit.json"
C, SIZE = 64, 48


def _old_objective(fitter: NBVFitter, state: BodyState, features, camera) -> torch.Tensor:
    cfg = fitter.config
    centres, joints = fitter.nbv.pose(fitter.body, *state.as_tuple())
    out = render(centres, camera, cfg.precision, cfg.M)
    rendered = render_features(out, fitter.table)
    orient = render_features(out, fitter.nbv.orientation_weights(joints))
    lik = feature_likelihood(
        features, rendered, orient, out.mask, fitter.clutter, robust=cfg.robust,
        orient_mode=cfg.orient_mode, support=out.silhouette > cfg.support_threshold,
    )  # fmt: skip
    total = lik.loss + cfg.hinge_weight * hinge_prior(state.body_pose)
    if fitter.pose_prior is not None:  # the same priors as the objective (max_abs_diff)
        total = total + cfg.pose_prior_weight * fitter.pose_prior(state.body_pose)
    return total


def _setup(B: int):
    g = torch.Generator().manual_seed(0)
    body = BodyModel.default()
    nbv = NeuralBodyVolume(body)
    K, O = nbv.num_kernels, nbv.num_bins
    table = F.normalize(torch.randn(K, O, C, generator=g), dim=-1).reshape(K, O * C)
    clutter = F.normalize(torch.randn(C, generator=g), dim=0)
    fitter = NBVFitter(body, nbv, table, clutter)
    cam = Camera(60.0, 60.0, 23.5, 23.5, SIZE, SIZE)
    v = body.v_template
    mid_y = float((v[:, 1].max() + v[:, 1].min()) / 2)
    state = BodyState(
        torch.tensor([[math.pi, 0.0, 0.0]]).repeat(B, 1) + 0.05 * torch.randn(B, 3, generator=g),
        0.1 * torch.randn(B, 69, generator=g), torch.zeros(B, 10),
        torch.tensor([[0.0, mid_y, 2.6]]).repeat(B, 1),
    )  # fmt: skip
    feats = F.normalize(torch.randn(B, C, SIZE, SIZE, generator=g), dim=1)
    return fitter, state, feats, cam, K, O


def _step(kind: str, fitter, state, feats, cam) -> torch.Tensor:
    params = [t.detach().clone().requires_grad_(True) for t in state.as_tuple()]
    params[2].requires_grad_(False)
    cur = BodyState(*params)
    if kind == "old":
        loss = _old_objective(fitter, cur, feats, cam)
    else:
        loss = fitter.objective(cur, feats, cam)[0]
    loss.sum().backward()
    return loss.detach()


def measure(B: int, rounds: int, warmup: int = 2) -> dict[str, Any]:
    fitter, state, feats, cam, K, O = _setup(B)
    for _ in range(warmup):
        _step("old", fitter, state, feats, cam)
        _step("fused", fitter, state, feats, cam)
    times: dict[str, list[float]] = {"old": [], "fused": []}
    for r in range(rounds):
        for kind in ("old", "fused") if r % 2 == 0 else ("fused", "old"):
            t = time.perf_counter()
            _step(kind, fitter, state, feats, cam)
            times[kind].append(time.perf_counter() - t)
    diff = _step("old", fitter, state, feats, cam) - _step("fused", fitter, state, feats, cam)
    old_ms, fused_ms = (1e3 * statistics.median(times[k]) for k in ("old", "fused"))
    return {
        "B": B, "H": SIZE, "W": SIZE, "K": K, "M": fitter.config.M, "O": O, "C": C,
        "old_ms": round(old_ms, 3), "fused_ms": round(fused_ms, 3),
        "speedup": round(old_ms / fused_ms, 2),
        "max_abs_diff": float(diff.abs().max()), "repeats": rounds,
    }  # fmt: skip


def measure_chain(rounds: int) -> dict[str, Any]:
    """One fused step with the kinematic chain as the torch loop vs the C++ op (interleaved)."""
    import engines.skinning as sk

    fitter, state, feats, cam, _, _ = _setup(1)
    chain = sk.kinematic_chain
    impls = {
        "reference": lambda local, parents, impl="auto": chain(local, parents, "reference"),
        "fast": lambda local, parents, impl="auto": chain(local, parents, "fast"),
    }
    times: dict[str, list[float]] = {k: [] for k in impls}
    try:
        for r in range(rounds + 2):
            for name in impls if r % 2 == 0 else reversed(list(impls)):
                sk.kinematic_chain = impls[name]
                t = time.perf_counter()
                _step("fused", fitter, state, feats, cam)
                if r >= 2:  # two warm-up rounds
                    times[name].append(time.perf_counter() - t)
    finally:
        sk.kinematic_chain = chain
    ref, fast = (1e3 * statistics.median(times[k]) for k in ("reference", "fast"))
    return {"reference_ms": round(ref, 3), "fast_ms": round(fast, 3),
            "speedup": round(ref / fast, 2)}  # fmt: skip


def measure_starts(rounds: int, steps: int = 5) -> dict[str, Any]:
    """Two starts of one body (the warm start's orientation hypothesis, the cold start's flip):
    two ``_optimise`` runs vs one ``_optimise_starts`` batch of two (interleaved)."""
    fitter, state, feats, cam, _, _ = _setup(1)
    alt = BodyState(-state.global_orient, state.body_pose, state.betas, state.transl)
    free = ("global_orient", "body_pose", "transl")
    anchors = [state.body_pose, state.body_pose]

    def separate() -> None:
        for s in (state, alt):
            fitter._optimise(s, feats, cam, free, steps, 0.01, pose_anchor=state.body_pose)

    def batched() -> None:
        fitter._optimise_starts([state, alt], feats, cam, free, steps, 0.01, anchors)

    impls = {"separate": separate, "batched": batched}
    times: dict[str, list[float]] = {k: [] for k in impls}
    for r in range(rounds + 1):
        for name in impls if r % 2 == 0 else reversed(list(impls)):
            t = time.perf_counter()
            impls[name]()
            if r >= 1:  # one warm-up round
                times[name].append(time.perf_counter() - t)
    sep, bat = (1e3 * statistics.median(times[k]) for k in ("separate", "batched"))
    return {"steps": steps, "separate_ms": round(sep, 3), "batched_ms": round(bat, 3),
            "speedup": round(sep / bat, 2)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="B=1 only; no results file")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rounds = args.rounds or (10 if args.quick else 30)
    load0 = os.getloadavg()[0]
    main_case = measure(1, rounds)
    result: dict[str, Any] = {
        **{k: main_case[k] for k in ("old_ms", "fused_ms", "speedup", "max_abs_diff")},
        "settings": {k: main_case[k] for k in ("B", "H", "W", "K", "M", "O", "C")},
        "threads": torch.get_num_threads(),
    }
    result["kinematic_chain"] = measure_chain(rounds)
    result["two_starts"] = measure_starts(max(5, rounds // 2))
    if not args.quick:
        result["cases"] = [main_case, measure(4, max(5, rounds // 2))]
    result.update(environment(load0))
    emit(result, RESULTS, args.quick)


if __name__ == "__main__":
    main()
