"""replay_choice: which hypothesis a part weight and a bias keep, and its input checks."""

from dataclasses import replace

import numpy as np
import pytest

from engines.evaluation.choice import replay_choice
from engines.evaluation.runner import MethodOutput


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
