"""Accuracy evaluation of the pose estimators (DESIGN.md s4): protocols (clean, Occ, AdvOcc@40/80),
evaluation samples (synthetic held-out sequences, real preprocessed data), the method runner
(regression head, cold and warm NBV fitting) and the report (markdown table, plot).
"""

from .protocols import PROTOCOLS, advocc_grid, worst_case
from .runner import Evaluator, build_protocol, score
from .samples import EvalFrame, EvalSequence, synthetic_sequences

__all__ = [
    "PROTOCOLS",
    "EvalFrame",
    "EvalSequence",
    "Evaluator",
    "advocc_grid",
    "build_protocol",
    "score",
    "synthetic_sequences",
    "worst_case",
]
