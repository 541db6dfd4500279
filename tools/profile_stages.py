"""Run the default config's stages one after another in one thread on a clip and time each.

    python tools/profile_stages.py [--source engines/data/sample.mp4] [--cprofile fit]

No queues, no threads: per-stage CPU cost per frame (median / p95 ms) and how often the
detector ran, the fit warm- or cold-started. Side outputs (the fit's track feedback) are
delivered to the detect stage before the next frame, i.e. with zero pipeline latency.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import pstats
import time

import numpy as np

from pipeline.config import build, load_config
from pipeline.graph import _cls_path
from pipeline.runner import SAMPLE_CLIP
from pipeline.worker import import_stage
from stages.base import StageContext


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="configs/default.yaml")
    ap.add_argument("--source", default=str(SAMPLE_CLIP))
    ap.add_argument("--cprofile", default="", help="stage name to profile with cProfile")
    ap.add_argument("--frames", type=int, default=0)
    ap.add_argument("--sort", default="cumulative", help="cProfile sort key")
    ap.add_argument("--trace", action="store_true", help="print each frame's people and fit counts")
    ap.add_argument("--torch-profile", default="", help="stage name to profile with torch.profiler")
    args = ap.parse_args()
    cfg = load_config(args.config)

    stages, side = {}, []
    for sc in cfg.stages:
        cls = import_stage(_cls_path(sc.type))
        params = dict(sc.params)
        if sc.type == "decode":
            params["source"] = args.source
        if sc.type == "publish":
            continue
        obj = build(cls.Params, params)
        ctx = StageContext(sc.name, "s", lambda c, m: side.append((c, m)), lambda: False,
                           lambda e: None, logging.getLogger(sc.name))  # fmt: skip
        st = cls(obj, ctx)
        st.setup()
        stages[sc.name] = st
    times: dict[str, list[float]] = {k: [] for k in stages}
    prof = cProfile.Profile() if args.cprofile else None
    tprof = None
    if args.torch_profile:
        import torch.profiler

        tprof = torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], with_stack=True
        )
    src = stages.pop(next(iter(stages)))
    n = 0
    detected = 0
    for msg in src.produce():
        msgs = [msg]
        for name, st in stages.items():
            t = time.perf_counter()
            if prof and name == args.cprofile:
                prof.enable()
            if tprof and name == args.torch_profile and n == 10:
                tprof.__enter__()
            msgs = [o for m in msgs for o in st.process(m)]
            if tprof and name == args.torch_profile and n == 40:
                tprof.__exit__(None, None, None)
                print(tprof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40))
            if prof and name == args.cprofile:
                prof.disable()
            times[name].append((time.perf_counter() - t) * 1e3)
            for ch, m in side:
                for s2 in stages.values():
                    if ch in getattr(s2, "side_inputs", ()):
                        s2.on_side(ch, m)
            side.clear()
        detected += int(bool(getattr(msgs[0], "detected", False))) if msgs else 0
        if args.trace and msgs:
            fs = getattr(stages.get("fit"), "stats", {})
            people = [(q.track_id, q.state, q.box_source) for q in msgs[0].persons]
            print(n, "det" if msgs[0].detected else "   ", people, fs, flush=True)
        n += 1
        if args.frames and n >= args.frames:
            break
    out = {k: {"p50": round(float(np.median(v)), 2), "p95": round(float(np.percentile(v, 95)), 2)}
           for k, v in times.items() if v}  # fmt: skip
    fit = stages.get("fit")
    print(json.dumps({"frames": n, "detected": detected, "stage_ms": out,
                      "fit_stats": getattr(fit, "stats", None)}))  # fmt: skip
    if prof:
        pstats.Stats(prof).sort_stats(args.sort).print_stats(45)


if __name__ == "__main__":
    main()
