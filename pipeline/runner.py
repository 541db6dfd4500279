"""Run a configured pipeline with command-line overrides; used by run_stream.py and benchmarks."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError, PipelineConfig, load_config
from pipeline.graph import Graph, GraphResult

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = ROOT / "configs" / "default.yaml"
SAMPLE_CLIP = ROOT / "engines" / "data" / "sample.mp4"


@dataclass
class RunOptions:
    source: str | None = None  # None: the bundled sample clip
    output: str | None = "out"  # None: no file sinks
    config: str | Path = DEFAULT_CONFIG
    publish: str | None = None  # None: keep the config's endpoint
    mode: str | None = None  # None: keep the config's mode
    realtime: bool | None = None  # None: keep the config's setting
    progress: bool = False


def apply_options(cfg: PipelineConfig, opts: RunOptions) -> PipelineConfig:
    """Write the command-line overrides into the config (decode/publish stage params, mode)."""
    if opts.mode is not None:
        if opts.mode not in ("threads", "processes"):
            raise ConfigError(f"mode: {opts.mode!r} is not one of threads, processes")
        cfg.mode = opts.mode
        if cfg.transport.protocol == "inproc" and opts.mode == "processes":
            cfg.transport.protocol = "auto"
    decode = cfg.stage("decode")
    if decode is not None:
        source = opts.source
        if source is None and not decode.params.get("source"):
            if not SAMPLE_CLIP.is_file():
                raise ConfigError(
                    f"no --source given and the sample clip {SAMPLE_CLIP} does not exist; "
                    "pass --source FILE|URL|CAMERA_INDEX"
                )
            source = str(SAMPLE_CLIP)
        if source is not None:
            decode.params["source"] = source
        if opts.realtime is not None:
            decode.params["realtime"] = opts.realtime
    publish = cfg.stage("publish")
    if publish is not None:
        if opts.publish is not None:
            publish.params["endpoint"] = opts.publish
        if opts.output is not None:
            publish.params["output_dir"] = str(opts.output)
    return cfg


def prepare(opts: RunOptions) -> Graph:
    """Load, override and validate the config, then preflight every stage (nothing runs yet)."""
    cfg = apply_options(load_config(opts.config), opts)
    graph = Graph(cfg)
    graph.preflight()
    return graph


def run(opts: RunOptions) -> GraphResult:
    """Prepare and run; raises ``ConfigError``/source/publish errors before anything starts."""
    graph = prepare(opts)
    bar: Any = None
    on_progress = None
    if opts.progress and not graph.plan.live:
        from tqdm import tqdm

        total = graph.expected_frames()
        bar = tqdm(total=total, unit="frame", file=sys.stderr, dynamic_ncols=True)
        last = graph.config.stages[-1].name

        def on_progress(latest: dict[str, dict[str, Any]]) -> None:
            n = int(latest.get(last, {}).get("frames_out", 0))
            if n > bar.n:
                bar.update(n - bar.n)

    try:
        result = graph.run(on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
    return result
