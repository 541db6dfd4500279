"""Training step of the feature network: all InfoNCE targets vs a random subset, NCHW vs NHWC.

    python -m benchmarks.train --quick     # last line: one JSON object
    python -m benchmarks.train             # more rounds; writes results/train.json

One step = ``engines.train.trainer.Trainer.train_step`` (network forward, M = 10 render of the
true pose, pooled kernel targets, InfoNCE against the bank, background push, regression losses,
backward, gradient clipping, Adam), the step of ``Trainer.run``, on one fixed batch of
synthetic training crops (``configs/train.yaml``'s data and network settings). Variants:

- ``baseline``: InfoNCE on every visible kernel target (~5,400 at batch 16), NCHW;
- ``subset``: InfoNCE on ``max_targets`` random targets (bank updated with all), NCHW;
- ``fast``: ``subset`` + channels-last network (the shipped training configuration).

The variants are timed interleaved round by round, so that load from other processes hits all
alike; speedups are ratios of medians from the same run. The 1-minute load average and the
process CPU time per step are recorded.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import emit, environment
from engines.train.config import load_train_config
from engines.train.trainer import Trainer, collate

RESULTS = Path(__file__).resolve().parent / "results" / "train.json"
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "train.yaml"


def _trainer(overrides: dict[str, Any], train_set, val_set) -> Trainer:
    cfg = load_train_config(CONFIG, {**overrides, "workers": 0})
    return Trainer(cfg, train_set, val_set)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="batch 8, 3 rounds; no results file")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (training uses 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from engines.synth.dataset import SynthConfig, SynthDataset

    base = load_train_config(CONFIG)
    batch_size = 8 if args.quick else base.batch_size
    rounds = args.rounds or (3 if args.quick else 8)
    data_cfg = SynthConfig.from_dict({**base.data, "crop_size": base.featnet["input_size"]})
    train_set = SynthDataset(data_cfg, "train")
    batch = collate([train_set[i] for i in range(batch_size)])
    max_targets = base.max_targets or 2048
    variants = {
        "baseline": {"max_targets": 0, "channels_last": False},
        "subset": {"max_targets": max_targets, "channels_last": False},
        "fast": {"max_targets": max_targets, "channels_last": True},
    }
    trainers = {
        name: _trainer({**o, "batch_size": batch_size, "threads": args.threads}, train_set, None)
        for name, o in variants.items()
    }
    for tr in trainers.values():  # warm-up (allocator, bank rows seen once)
        tr.train_step(batch)
    wall: dict[str, list[float]] = {n: [] for n in trainers}
    cpu: dict[str, list[float]] = {n: [] for n in trainers}
    load0 = os.getloadavg()[0]
    for _ in range(rounds):
        for name, tr in trainers.items():
            t, c = time.perf_counter(), time.process_time()
            tr.train_step(batch)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
    ms = {n: 1e3 * statistics.median(v) for n, v in wall.items()}
    result: dict[str, Any] = {
        "baseline_ms": round(ms["baseline"], 1),
        "subset_ms": round(ms["subset"], 1),
        "fast_ms": round(ms["fast"], 1),
        "speedup_subset": round(ms["baseline"] / ms["subset"], 2),
        "speedup_fast": round(ms["baseline"] / ms["fast"], 2),
        "cpu_ms": {n: round(1e3 * statistics.median(v), 1) for n, v in cpu.items()},
        "settings": {
            "batch_size": batch_size,
            "max_targets": max_targets,
            "input_size": base.featnet["input_size"],
            "threads": args.threads,
            "rounds": rounds,
        },
        **environment(load0),
    }
    emit(result, RESULTS, args.quick)


if __name__ == "__main__":
    main()
