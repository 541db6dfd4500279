"""Feature-network latency per engine backend available here (CPU: torch, onnxruntime).

    python -m benchmarks.engines --quick     # last line: one JSON object
    python -m benchmarks.engines             # also writes benchmarks/results/engines.json

Median wall time of ``engine(images)`` (input already normalised, outputs copied to the caller)
at batch 1 and 4, default ``FeatNetConfig`` input size, random weights (latency does not depend
on their values). Backends are timed interleaved, round by round, so that load from other
processes hits them alike; ratios are onnxruntime / torch per batch size. The 1-minute load
average before/after is recorded: on a shared machine, torch's thread pool suffers most.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import emit
from engines.backends import BackendUnavailableError, EngineConfig, create_engine
from engines.featnet import FeatNetConfig, FeatureNet

RESULTS = Path(__file__).resolve().parent / "results" / "engines.json"
BATCHES = (1, 4)


def _available_backends() -> list[str]:
    names = ["torch"]
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401

        names.append("onnxruntime")
    except ImportError:
        pass
    return names


def run(
    repeats: int, warmup: int, checkpoint: str | None, cache_dir: str, ort_threads: int | None
) -> dict[str, Any]:
    model = FeatureNet.from_checkpoint(checkpoint) if checkpoint else FeatureNet(FeatNetConfig())
    model.eval()
    S = model.config.input_size
    engines = {}
    for name in _available_backends():
        threads = ort_threads if name == "onnxruntime" else None
        cfg = EngineConfig(
            backend=name, max_batch=max(BATCHES), cache_dir=cache_dir, num_threads=threads
        )
        try:
            engines[name] = create_engine(cfg, model)
        except BackendUnavailableError as e:  # reported, not hidden
            print(f"skipping {name}: {e}")
    load_before = os.getloadavg()[0]
    gen = torch.Generator().manual_seed(0)
    inputs = {b: torch.randn(b, 3, S, S, generator=gen).numpy() for b in BATCHES}
    times: dict[str, dict[int, list[float]]] = {n: {b: [] for b in BATCHES} for n in engines}
    for b in BATCHES:
        for engine in engines.values():
            for _ in range(warmup):
                engine(inputs[b])
        for _ in range(repeats):
            for name, engine in engines.items():
                t0 = time.perf_counter()
                engine(inputs[b])
                times[name][b].append(1000.0 * (time.perf_counter() - t0))
    latency = {
        n: {str(b): round(statistics.median(v), 3) for b, v in d.items()} for n, d in times.items()
    }
    best = {n: {str(b): round(min(v), 3) for b, v in d.items()} for n, d in times.items()}
    result: dict[str, Any] = {
        "benchmark": "engines",
        "input_size": S,
        "feature_size": model.config.feature_size,
        "featnet": model.config.to_dict(),
        "parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": torch.get_num_threads(),
        "onnxruntime_threads": ort_threads or "default",
        "cpu_count": os.cpu_count(),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "repeats": repeats,
        "median_ms": latency,
        "min_ms": best,
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }
    if "onnxruntime" in latency:
        result["ratio_onnxruntime_over_torch"] = {
            str(b): round(latency["onnxruntime"][str(b)] / latency["torch"][str(b)], 3)
            for b in BATCHES
        }
    for engine in engines.values():
        engine.close()
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="few repeats, no results file")
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--checkpoint", default=None, help="FeatureNet checkpoint (default: random)")
    p.add_argument("--cache-dir", default=None, help="engine cache (default: a temp folder)")
    p.add_argument("--ort-threads", type=int, default=None, help="onnxruntime intra-op threads")
    a = p.parse_args()
    repeats = a.repeats or (10 if a.quick else 50)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(repeats, 2 if a.quick else 5, a.checkpoint, a.cache_dir or tmp, a.ort_threads)
    emit(result, RESULTS, a.quick)


if __name__ == "__main__":
    main()
