"""The fitting-step benchmark compares like with like: its reference objective is the fitter's."""

import torch

from benchmarks.fit import _setup, _step, measure_starts


def test_reference_objective_equals_the_fitter_objective():
    fitter, state, feats, cam, _, _ = _setup(1)
    assert fitter.pose_prior is not None  # the default config has the learned pose prior
    old, fused = _step("old", fitter, state, feats, cam), _step("fused", fitter, state, feats, cam)
    torch.testing.assert_close(old, fused, rtol=1e-5, atol=1e-5)


def test_two_starts_case_reports_both_timings():
    r = measure_starts(rounds=1, steps=1)
    assert r["steps"] == 1 and r["separate_ms"] > 0 and r["batched_ms"] > 0
    assert r["speedup"] == round(r["separate_ms"] / r["batched_ms"], 2)
