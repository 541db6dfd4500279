"""The head against the mean pose on many clean frames (``engines.evaluation.head``)."""

import numpy as np
import pytest

from engines.body import BodyModel
from engines.evaluation.head import head_accuracy, per_frame_pa_mpjpe, reduction_interval
from engines.evaluation.runner import Evaluator, MethodOutput, build_protocol
from engines.evaluation.samples import synthetic_sequences
from engines.metrics import pa_mpjpe

from ._helpers import S, tiny_bundle, walk_takes


def test_reduction_interval_brackets_the_ratio_and_narrows_with_agreement():
    rng = np.random.default_rng(0)
    base = [rng.uniform(100, 140, 8) for _ in range(30)]
    # every sequence exactly 30% better: every resample gives 0.3
    same = reduction_interval([0.7 * b for b in base], base)
    assert same == pytest.approx([0.3, 0.3], abs=1e-6)
    # sequences that disagree (some 10% better, some 50%): a wide interval around the ratio
    mixed = [(0.5 if k % 2 else 0.9) * b for k, b in enumerate(base)]
    lo, hi = reduction_interval(mixed, base)
    point = 1 - np.concatenate(mixed).sum() / np.concatenate(base).sum()
    assert lo < point < hi and hi - lo > 0.05
    # non-finite frames are dropped from both sides
    with_nan = [np.r_[0.7 * b, np.nan] for b in base]
    assert reduction_interval(with_nan, [np.r_[b, 1.0] for b in base]) == pytest.approx(same)


def test_reduction_interval_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="one array"):
        reduction_interval([np.ones(3)], [])
    with pytest.raises(ValueError, match="sequence 0"):
        reduction_interval([np.ones(3)], [np.ones(4)])
    with pytest.raises(ValueError, match="n_boot"):
        reduction_interval([np.ones(3)], [np.ones(3)], n_boot=0)


def test_per_frame_pa_mpjpe_is_the_metric_of_each_frame():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(3, 24, 3))
    pred = gt + 0.05 * rng.normal(size=(3, 24, 3))
    vis = np.ones((3, 24), bool)
    vis[2] = False  # no visible joint: NaN
    o = MethodOutput(pred, np.zeros(3), np.zeros(3), np.arange(3))

    class F:  # the two ProtocolFrames fields it reads
        joints3d, visible = gt, vis

    got = per_frame_pa_mpjpe(o, F)
    assert got[0] == pytest.approx(pa_mpjpe(pred[:1], gt[:1], vis[:1]))
    assert got[1] == pytest.approx(pa_mpjpe(pred[1:2], gt[1:2], vis[1:2]))
    assert np.isnan(got[2])


def test_head_accuracy_scores_every_frame_against_the_mean_pose():
    body = BodyModel.default()
    ev = Evaluator(tiny_bundle(body), body=body)
    seqs = synthetic_sequences(2, 2, S, seed=0, takes=walk_takes())
    r = head_accuracy(ev, seqs)
    assert (r["sequences"], r["frames"]) == (2, 4)
    assert set(r) == {"regression", "regression_flip", "mean_pose", "sequences", "frames"}
    for m in ("regression", "regression_flip"):
        assert r[m]["frames"] == 4
        expect = 1 - r[m]["pa_mpjpe"] / r["mean_pose"]["pa_mpjpe"]
        assert r[m]["pa_reduction"] == pytest.approx(expect, abs=1e-4)
        lo, hi = r[m]["pa_reduction_ci95"]
        assert lo <= hi
    # the plain head's score is the evaluator's regression on the same clean frames
    pf = build_protocol(ev, seqs[0], "clean", np.random.default_rng(0))
    out, _ = ev.run_regression(pf, flip=False)
    pf1 = build_protocol(ev, seqs[1], "clean", np.random.default_rng(0))
    out1, _ = ev.run_regression(pf1, flip=False)
    pred = np.concatenate([out.joints3d, out1.joints3d])
    gt = np.concatenate([pf.joints3d, pf1.joints3d])
    vis = np.concatenate([pf.visible, pf1.visible])
    assert r["regression"]["pa_mpjpe"] == pytest.approx(pa_mpjpe(pred, gt, vis), rel=1e-6)
    assert "regression_flip" not in head_accuracy(ev, seqs[:1], flip=False)
    with pytest.raises(ValueError, match="at least one"):
        head_accuracy(ev, [])
