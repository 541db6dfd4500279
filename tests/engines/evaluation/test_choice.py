"""replay_choice: which hypothesis a part weight and a bias keep, and its input checks;
choice_accuracy: which cue keeps the best hypothesis on the frames where the choice matters."""

from dataclasses import replace

import numpy as np
import pytest

from engines.evaluation.choice import choice_accuracy, replay_choice
from engines.evaluation.runner import MethodOutput, ProtocolFrames


def _output(scores: np.ndarray) -> MethodOutput:  # scores: [N, S, 2]
    N, S, _ = scores.shape
    hyp = np.arange(N * S, dtype=float)[:, None, None].repeat(24, 1).repeat(3, 2)
    hyp = hyp.reshape(N, S, 24, 3)  # hypothesis k of frame n is filled with n * S + k
    return MethodOutput(hyp[:, 0].copy(), np.ones(N), np.ones(N), np.arange(N),
                        hypotheses=hyp, hypothesis_scores=scores)  # fmt: skip


def _chosen(out: MethodOutput) -> list[int]:
    S = out.hypotheses.shape[1]
    return [int(out.joints3d[n, 0, 0]) - n * S for n in range(len(out.index))]


def test_weight_and_bias_decide_the_choice():
    # frame 0: the flip has the lower objective but a worse part term; frame 1: better on both
    scores = np.array([[[1.00, 0.5], [0.99, 0.6]],
                       [[1.00, 0.5], [0.90, 0.4]]])  # fmt: skip
    out = [_output(scores)]
    assert _chosen(replay_choice(out, 0.0)[0]) == [1, 1]  # objective alone
    assert _chosen(replay_choice(out, 0.3)[0]) == [0, 1]  # 0.99 + 0.18 > 1.0 + 0.15
    assert _chosen(replay_choice(out, 0.0, bias=0.05)[0]) == [0, 1]  # 0.99 + 0.05 > 1.0
    assert _chosen(replay_choice(out, 0.0, bias=0.2)[0]) == [0, 0]  # the regression's start
    assert _chosen(replay_choice(out, 0.0, bias=-0.2)[0]) == [1, 1]
    assert replay_choice(out, 0.3)[0].states is None


def test_checks_its_inputs():
    scores = np.array([[[1.0, np.nan], [0.9, np.nan]]])
    out = [_output(scores)]
    assert _chosen(replay_choice(out, 0.0)[0]) == [1]  # no part terms needed at weight 0
    with pytest.raises(ValueError, match="part terms"):
        replay_choice(out, 0.3)
    bad = replace(out[0], hypothesis_scores=scores[:, :, :1])
    with pytest.raises(ValueError, match=r"\[N, S, 2\]"):
        replay_choice([bad], 0.0)
    with pytest.raises(ValueError, match="several scored hypotheses"):
        replay_choice([MethodOutput(np.zeros((1, 24, 3)), np.ones(1), np.ones(1), np.arange(1))],
                      0.0)  # fmt: skip


def _frames(errors_mm: np.ndarray) -> tuple[MethodOutput, ProtocolFrames]:  # errors: [N, S]
    """Frames whose hypothesis k sits ``errors_mm[n, k]`` mm (root-aligned MPJPE) from the
    truth: every non-root joint moved that far along x."""
    N, S = errors_mm.shape
    gt = np.random.default_rng(0).normal(size=(N, 24, 3))
    hyp = gt[:, None].repeat(S, 1).copy()
    hyp[:, :, 1:, 0] += errors_mm[:, :, None] / 1000.0
    vis = np.ones((N, 24), bool)
    vis[:, 0] = False  # (the root's error is 0 after alignment)
    out = MethodOutput(hyp[:, 0].copy(), np.ones(N), np.ones(N), np.arange(N), hypotheses=hyp,
                       hypothesis_scores=np.zeros((N, S, 2)))  # fmt: skip
    pf = ProtocolFrames("t", np.zeros((N, 4, 4, 3), np.uint8), np.eye(3)[None].repeat(N, 0),
                        gt, np.zeros((N, 24, 2)), vis, vis, np.ones(N), [{}] * N)  # fmt: skip
    return out, pf


def test_choice_accuracy_counts_each_cue_on_the_decisive_frames():
    # frame 0: flip best, both cues want the start; 1: start best, objective right, part wrong;
    # 2: flip best, part right; 3: only 20 mm apart (not decisive)
    out, pf = _frames(np.array([[300.0, 100.0], [100.0, 300.0], [250.0, 50.0], [100.0, 120.0]]))
    scores = np.array([[[1.0, 0.5], [1.1, 0.9]],
                       [[1.0, 0.9], [1.1, 0.5]],
                       [[1.0, 0.9], [1.01, 0.5]],
                       [[1.0, 0.5], [0.5, 0.5]]])  # fmt: skip
    out = replace(out, hypothesis_scores=scores)
    acc = choice_accuracy([out], [pf], part_weight=0.3)
    assert acc["frames"] == 4 and acc["decisive"] == 3
    # chosen at 0.3: frame 0 start (wrong), frame 1 flip (1.1 + 0.15 < 1.0 + 0.27: wrong),
    # frame 2 flip (1.01 + 0.15 < 1.0 + 0.27: right)
    assert acc["chosen"] == pytest.approx(1 / 3, abs=1e-3)
    assert acc["objective"] == pytest.approx(1 / 3, abs=1e-3)  # frame 1 only
    assert acc["part"] == pytest.approx(1 / 3, abs=1e-3)  # frame 2 only
    assert acc["neither"] == pytest.approx(1 / 3, abs=1e-3)  # frame 0
    assert acc["first"] == pytest.approx(1 / 3, abs=1e-3)  # frame 1
    # a margin above every gap leaves nothing decisive; a weight of 0 chooses on the objective
    assert choice_accuracy([out], [pf], 0.3, margin_mm=500.0)["chosen"] is None
    assert choice_accuracy([out], [pf], 0.0)["chosen"] == acc["objective"]


def test_choice_accuracy_without_part_terms_and_bad_input():
    out, pf = _frames(np.array([[300.0, 100.0]]))
    out = replace(out, hypothesis_scores=np.array([[[1.0, np.nan], [0.9, np.nan]]]))
    acc = choice_accuracy([out], [pf], part_weight=0.3)  # the objective alone chooses
    assert acc["chosen"] == acc["objective"] == 1.0 and acc["part"] is None
    assert acc["neither"] is None
    with pytest.raises(ValueError, match="one MethodOutput per ProtocolFrames"):
        choice_accuracy([out], [pf, pf], 0.3)
    with pytest.raises(ValueError, match="several scored hypotheses"):
        choice_accuracy([replace(out, hypothesis_scores=None)], [pf], 0.3)
