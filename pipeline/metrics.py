"""Per-stage counters and latency percentiles.

Each stage owns one ``StageMetrics`` (never shared across threads); it sends ``snapshot()`` dicts
to the graph supervisor, which keeps the latest per stage and builds the run summary.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class StageMetrics:
    """Counters of one stage. Latency is the time ``process``/``produce`` took per message."""

    name: str
    window: int = 2048
    frames_in: int = 0
    frames_out: int = 0
    dropped: int = 0  # frames a ``latest`` queue discarded (send side + receive side)
    malformed: int = 0  # messages that failed to decode
    events: int = 0
    _lat: deque = field(default_factory=deque, repr=False)

    def __post_init__(self) -> None:
        self._lat = deque(maxlen=self.window)

    def record_latency(self, seconds: float) -> None:
        self._lat.append(seconds)

    def snapshot(self) -> dict[str, Any]:
        lat = np.asarray(self._lat, dtype=np.float64) * 1000.0
        p50, p95 = np.percentile(lat, [50, 95]).tolist() if lat.size else (0.0, 0.0)
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.dropped,
            "malformed": self.malformed,
            "events": self.events,
            "latency_ms_p50": round(p50, 3),
            "latency_ms_p95": round(p95, 3),
        }


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._t0


def summarize(
    stages: dict[str, dict[str, Any]], order: list[str], elapsed_s: float
) -> dict[str, Any]:
    """Run summary: frames decoded by the first stage, published by the last, total drops.

    The source's ``dropped`` are frames its output queue refused, so ``frames`` (decoded)
    equals ``published + dropped`` for a chain that loses nothing else.
    """
    first = stages.get(order[0], {}) if order else {}
    last = stages.get(order[-1], {}) if order else {}
    frames = int(first.get("frames_out", 0)) + int(first.get("dropped", 0))
    published = int(last.get("frames_out", 0))
    dropped = sum(int(s.get("dropped", 0)) for s in stages.values())
    return {
        "frames": frames,
        "published": published,
        "dropped": dropped,
        "malformed": sum(int(s.get("malformed", 0)) for s in stages.values()),
        "elapsed_s": round(elapsed_s, 3),
        "fps": round(published / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        "stages": {name: stages.get(name, {}) for name in order},
    }
