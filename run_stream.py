#!/usr/bin/env python
"""Run the live pose pipeline on a file, stream or camera and publish over ZeroMQ.

The last stdout line is a one-line JSON summary; the exit status is non-zero if any stage failed.
Ctrl-C or SIGTERM (``kill``, ``docker stop``, systemd) drains: the source stops, every frame
already read is published, the sinks are closed and the summary says ``"interrupted": true``;
a second one stops at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from pipeline.config import ConfigError
from pipeline.graph import PreflightError
from pipeline.runner import DEFAULT_CONFIG, RunOptions, run
from pipeline.signals import handling


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--source",
        help="video file, URL (rtsp://, http://) or camera index "
        "(default: engines/data/sample.mp4)",
    )
    ap.add_argument(
        "--output",
        default="out",
        help="directory for poses.jsonl, poses.npz, overlay.mp4 (default: out/)",
    )
    ap.add_argument("--config", default=str(DEFAULT_CONFIG), help="pipeline YAML config")
    ap.add_argument("--publish", default="tcp://127.0.0.1:5555", help="ZeroMQ PUB endpoint")
    ap.add_argument(
        "--mode",
        choices=("threads", "processes"),
        default=None,
        help="run stages as threads or processes (default: from the config)",
    )
    ap.add_argument(
        "--realtime",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="pace a file at its native frame rate (default: as fast as possible)",
    )
    ap.add_argument(
        "--bvh",
        default=None,
        help="after the run, export tracks of <output>/poses.npz as BVH to this path "
        "({track} = track id), e.g. out/track_{track}.bvh",
    )
    ap.add_argument(
        "--bvh-track", type=int, action="append", help="track id to export (default: all)"
    )
    ap.add_argument(
        "--bvh-up", choices=("y", "z"), default="y", help="BVH up axis (y: Blender's default)"
    )
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def _raise_interrupt(signum: int, frame: object) -> None:
    """SIGTERM as ``KeyboardInterrupt`` while the graph runs, so a service manager's stop
    drains like Ctrl-C instead of killing the run with frames in flight and the sinks open."""
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    opts = RunOptions(
        source=args.source,
        output=args.output,
        config=args.config,
        publish=args.publish,
        mode=args.mode,
        realtime=args.realtime,
        progress=not args.no_progress,
    )
    try:
        with handling(_raise_interrupt, signal.SIGTERM):
            result = run(opts)
    except (ConfigError, PreflightError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        print(json.dumps({"ok": False, "error": str(exc)}))
        return 2
    except KeyboardInterrupt:  # before the graph ran (loading models, preflight)
        print("error: interrupted before the stream started", file=sys.stderr)
        print(json.dumps({"ok": False, "interrupted": True, "error": "interrupted"}))
        return 130
    for err in result.errors:
        print(f"error: {err}", file=sys.stderr)
        if args.verbose and err.traceback:
            print(err.traceback, file=sys.stderr)
    summary = {
        "ok": result.ok,
        **result.summary,
        "errors": [{"stage": e.stage, "error": e.error} for e in result.errors],
    }
    if result.interrupted:
        summary["interrupted"] = True
    if args.bvh and args.output:
        from pathlib import Path

        from engines.export_bvh import export_tracks_bvh

        try:
            paths = export_tracks_bvh(
                Path(args.output) / "poses.npz", args.bvh, args.bvh_track, args.bvh_up
            )
            summary["bvh"] = [str(p) for p in paths]
            if not paths:
                print("warning: --bvh: no fitted track to export", file=sys.stderr)
        except (ValueError, FileNotFoundError) as exc:
            print(f"error: bvh export: {exc}", file=sys.stderr)
            summary["bvh_error"] = str(exc)
            summary["ok"] = False
    print(json.dumps(summary, separators=(",", ":")))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
