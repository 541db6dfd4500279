"""NBV renderer: fast (culled, C++) vs reference (dense torch), forward + backward of a feature map.

    python -m benchmarks.render --quick     # last line: one JSON object
    python -m benchmarks.render             # + batch 8 and a 64x64 map; writes results/render.json

Scene: the default body (engines.body, engines.nbv: K = 858 kernels) standing, facing the camera,
arms lowered, filling an 80x80 feature map (f = 1250 px, principal point (39.5, 39.5), 30 m away:
SPIN's crop camera at stride 4). One step = ``render(centres, camera, M=10)`` +
``render_features(out, table [K, 128])`` + backward of a fixed random upstream gradient to the
kernel centres, float32. The implementations are timed interleaved, round by round, so that load
from other processes hits both alike; speedup = ref_ms / fast_ms from the same run (medians).
max_abs_diff compares the two feature maps (float32; rare slot swaps from rounding included).
Threads: torch's default for this machine (the fast path itself runs one thread per body). The
1-minute load average is recorded; on a shared machine wall times swing with it, so the median
process CPU time per step (all threads) is reported too (*_cpu_ms).
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

from benchmarks.common import emit, environment
from engines.body import BodyModel
from engines.nbv import NeuralBodyVolume
from engines.render import Camera, render, render_features

RESULTS = Path(__file__).resolve().parent / "results" / "render.json"
C = 128
M = 10


def body_scene(B: int = 1, size: int = 80) -> tuple[torch.Tensor, Camera]:
    """Kernel centres [B, K, 3] of the default body in a typical crop, and the map's camera."""
    body = BodyModel.default()
    nbv = NeuralBodyVolume(body)
    g = torch.Generator().manual_seed(0)
    pose = torch.zeros(B, 69)
    pose[:, 3 * 15 + 2] = -1.0  # arms 57 degrees down from the T-pose
    pose[:, 3 * 16 + 2] = 1.0
    pose = pose + 0.1 * torch.randn(B, 69, generator=g) * (torch.arange(B) > 0)[:, None]
    orient = torch.tensor([[math.pi, 0.0, 0.0]]).repeat(B, 1)
    orient[:, 1] = 0.3 * torch.randn(B, generator=g) * (torch.arange(B) > 0)
    transl = torch.tensor([[0.0, -0.34, 30.0]]).repeat(B, 1)
    with torch.no_grad():
        centres, _ = nbv.pose(body, orient, pose, torch.zeros(B, 10), transl)
    scale = size / 80.0
    f, c = 1250.0 * scale, (size - 1) / 2.0
    return centres.contiguous(), Camera(f, f, c, c, size, size)


def _step(impl: str, centres: torch.Tensor, camera: Camera, table, upstream) -> torch.Tensor:
    c = centres.detach().requires_grad_(True)
    out = render(c, camera, M=M, impl=impl)
    feat = render_features(out, table)
    feat.backward(upstream)
    return feat.detach()


def measure(B: int, size: int, rounds: int, fast_per_round: int, warmup: int) -> dict[str, Any]:
    centres, camera = body_scene(B, size)
    g = torch.Generator().manual_seed(1)
    table = torch.nn.functional.normalize(torch.randn(centres.shape[1], C, generator=g), dim=-1)
    upstream = torch.randn(B, C, size, size, generator=g)
    for _ in range(warmup):
        _step("fast", centres, camera, table, upstream)
        _step("reference", centres, camera, table, upstream)
    ref_t, fast_t, ref_cpu, fast_cpu = [], [], [], []
    for _ in range(rounds):
        t, c = time.perf_counter(), time.process_time()
        _step("reference", centres, camera, table, upstream)
        ref_t.append(time.perf_counter() - t)
        ref_cpu.append(time.process_time() - c)
        for _ in range(fast_per_round):
            t, c = time.perf_counter(), time.process_time()
            _step("fast", centres, camera, table, upstream)
            fast_t.append(time.perf_counter() - t)
            fast_cpu.append(time.process_time() - c)
    f_fast = _step("fast", centres, camera, table, upstream)
    f_ref = _step("reference", centres, camera, table, upstream)
    with torch.no_grad():
        out = render(centres, camera, M=M)
    ref_ms = 1e3 * statistics.median(ref_t)
    fast_ms = 1e3 * statistics.median(fast_t)
    return {
        "B": B,
        "H": size,
        "W": size,
        "K": int(centres.shape[1]),
        "M": M,
        "C": C,
        "coverage": round(out.mask.float().mean().item(), 4),
        "ref_ms": round(ref_ms, 3),
        "fast_ms": round(fast_ms, 3),
        "fast_min_ms": round(1e3 * min(fast_t), 3),
        "ref_cpu_ms": round(1e3 * statistics.median(ref_cpu), 3),
        "fast_cpu_ms": round(1e3 * statistics.median(fast_cpu), 3),
        "speedup": round(ref_ms / fast_ms, 2),
        "max_abs_diff": float((f_fast - f_ref).abs().max()),
        "repeats": {"reference": len(ref_t), "fast": len(fast_t)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="B=1, 80x80 only; no results file")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args()
    rounds = args.rounds or (7 if args.quick else 15)
    load0 = os.getloadavg()[0]
    main_case = measure(1, 80, rounds, fast_per_round=5, warmup=2)
    result: dict[str, Any] = {
        **{k: main_case[k] for k in ("ref_ms", "fast_ms", "speedup", "max_abs_diff")},
        "settings": {k: main_case[k] for k in ("B", "H", "W", "K", "M", "C")},
        **{k: main_case[k] for k in ("fast_min_ms", "ref_cpu_ms", "fast_cpu_ms")},
        "threads": torch.get_num_threads(),
    }
    if not args.quick:
        result["cases"] = [
            main_case,
            measure(8, 80, max(3, rounds // 3), fast_per_round=3, warmup=1),
            measure(1, 64, rounds, fast_per_round=5, warmup=2),
        ]
    result.update(environment(load0))
    emit(result, RESULTS, args.quick)


if __name__ == "__main__":
    main()
