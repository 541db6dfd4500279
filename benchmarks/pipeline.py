"""End-to-end pipeline throughput: decode -> detect -> publish on the sample clip.

``python -m benchmarks.pipeline --quick`` runs the default config (stages as threads, the fit in
its own process: ``run_as: process``) ``--repeats`` times and prints the median; the full run
compares three layouts (median of repeats each) and writes benchmarks/results/pipeline.json:
``default``, ``threads`` (every stage a thread: one GIL) and ``processes`` (every stage a
process). Runs vary (detection and fit feedback race through the queues), hence the medians.
Without the bundled sample clip a synthetic 320x240 clip is generated (no people in it:
detection cost is the detector's full scan, tracking is idle). The last stdout line is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from pipeline.runner import SAMPLE_CLIP, RunOptions, run
from pipeline.transport import free_tcp_port

RESULTS = Path(__file__).resolve().parent / "results" / "pipeline.json"


def synthetic_clip(path: Path, n: int = 60, width: int = 320, height: int = 240) -> Path:
    rng = np.random.default_rng(0)
    c = av.open(str(path), "w")
    s = c.add_stream("mpeg4", rate=25)
    s.width, s.height, s.pix_fmt = width, height, "yuv420p"
    bg = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    for i in range(n):
        img = np.roll(bg, 3 * i, axis=1)
        for p in s.encode(av.VideoFrame.from_ndarray(img, "rgb24")):
            c.mux(p)
    for p in s.encode():
        c.mux(p)
    c.close()
    return path


def all_threads_config(path: Path) -> Path:
    """The default config with every stage's ``run_as`` removed (all threads)."""
    import yaml

    from pipeline.runner import DEFAULT_CONFIG

    data = yaml.safe_load(Path(DEFAULT_CONFIG).read_text())
    for st in data["stages"]:
        st.pop("run_as", None)
    path.write_text(yaml.safe_dump(data))
    return path


def once(source: str, mode: str | None, out: Path, config: Path | None = None) -> dict:
    from pipeline.runner import DEFAULT_CONFIG

    t0 = time.perf_counter()
    result = run(
        RunOptions(
            source=source, output=str(out), mode=mode, config=config or DEFAULT_CONFIG,
            publish=f"tcp://127.0.0.1:{free_tcp_port()}",
        )
    )  # fmt: skip
    wall = time.perf_counter() - t0
    if not result.ok:
        raise SystemExit(f"pipeline failed: {[str(e) for e in result.errors]}")
    s = result.summary
    return {
        "mode": s["mode"],
        "fps": s["fps"],
        "frames": s["frames"],
        "published": s["published"],
        "dropped": s["dropped"],
        "wall_s": round(wall, 3),
        "stage_ms": {k: v.get("latency_ms_p50", 0.0) for k, v in s["stages"].items()},
        "stage_ms_p95": {k: v.get("latency_ms_p95", 0.0) for k, v in s["stages"].items()},
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        if SAMPLE_CLIP.is_file():
            source, clip_name = str(SAMPLE_CLIP), "engines/data/sample.mp4"
        else:
            source, clip_name = str(synthetic_clip(tmp_path / "clip.mp4")), "synthetic 320x240x60"
        threads_cfg = all_threads_config(tmp_path / "threads.yaml")
        layouts = {
            "default": (None, None),
            "threads": ("threads", threads_cfg),
            "processes": ("processes", None),
        }
        if args.quick:
            layouts = {"default": layouts["default"]}
        runs = {
            name: [once(source, mode, tmp_path / f"out-{name}", cfg) for _ in range(args.repeats)]
            for name, (mode, cfg) in layouts.items()
        }
    med = {name: _median(rs) for name, rs in runs.items()}
    summary = {
        **{k: med["default"][k] for k in ("fps", "frames", "published", "dropped", "stage_ms")},
        "fps_runs": med["default"]["fps_runs"],
        "repeats": args.repeats,
        "clip": clip_name,
    }
    if args.quick:
        print(json.dumps(summary))
        return
    report = {
        "clip": clip_name,
        "repeats": args.repeats,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "cpus": __import__("os").cpu_count(),
        **med,
        "threads_over_default_fps": round(med["threads"]["fps"] / med["default"]["fps"], 3),
        "processes_over_default_fps": round(med["processes"]["fps"] / med["default"]["fps"], 3),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({**summary, **{k: v for k, v in report.items() if k.endswith("_fps")}}))


def _median(rs: list[dict]) -> dict:
    return {
        "fps": statistics.median(r["fps"] for r in rs),
        "fps_runs": [r["fps"] for r in rs],
        "frames": rs[0]["frames"],
        "published": rs[0]["published"],
        "dropped": max(r["dropped"] for r in rs),
        "stage_ms": {k: statistics.median(r["stage_ms"][k] for r in rs) for k in rs[0]["stage_ms"]},
    }


if __name__ == "__main__":
    main()
