"""Build the stage graph from config and run it as threads or spawned processes.

Stages form a chain (decode -> detect -> [features -> fit ->] publish); stage ``i`` reads the
queue that stage ``i-1`` writes. Side channels connect a stage's declared ``side_outputs`` to any
stage's ``side_inputs`` of the same name (``tracks``: fit -> detect); the ``metrics`` side input
is fed by the supervisor. The mode (threads/processes) and the transport come from config alone.

End of stream: the source sends ``EndOfStream`` after its last frame; each stage flushes, forwards
it and exits, so every queued frame is delivered before the run ends. An exception in a stage
stops the graph (``GraphResult.errors`` names the stage); a ``DrainableError`` drains first.
Ctrl-C: the first asks the source to stop and the graph drains; a second stops at once.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import queue
import shutil
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from pipeline.config import ConfigError, PipelineConfig, build
from pipeline.messages import MetricsMessage, encode
from pipeline.metrics import summarize
from pipeline.transport import QueueSender, QueueSpec, make_address
from pipeline.worker import StagePlan, import_stage, run_in_process, run_in_thread

log = logging.getLogger("nbf.pipeline")

REGISTRY = {
    "decode": "stages.decode:DecodeStage",
    "detect": "stages.detect:DetectStage",
    "features": "stages.features:FeatureStage",
    "fit": "stages.fit:FitStage",
    "publish": "stages.publish:PublishStage",
}
METRICS_CHANNEL = "metrics"
STOP_GRACE_S = 15.0  # after a stop, how long to wait for stages before giving up on them


class PreflightError(RuntimeError):
    """A stage found a problem before the run started (missing file, port in use, ...)."""

    def __init__(self, stage: str, cause: Exception) -> None:
        super().__init__(f"{stage}: {cause}")
        self.stage, self.cause = stage, cause


@dataclass
class StageFailure:
    stage: str
    error: str
    traceback: str = ""
    drained: bool = False

    def __str__(self) -> str:
        return f"stage {self.stage!r} failed: {self.error}"


@dataclass
class GraphResult:
    ok: bool
    summary: dict[str, Any]
    errors: list[StageFailure] = field(default_factory=list)
    interrupted: bool = False


@dataclass
class GraphPlan:
    config: PipelineConfig
    stages: list[StagePlan]
    classes: list[type]
    params: list[Any]
    live: bool
    run_id: str
    metrics_spec: QueueSpec | None = None


def _cls_path(type_: str) -> str:
    return REGISTRY.get(type_, type_)


def plan_graph(config: PipelineConfig) -> GraphPlan:
    """Resolve stage classes, validate their params, pick policies and endpoints (no I/O)."""
    if not config.stages:
        raise ConfigError("stages: at least one stage is required")
    classes, params = [], []
    for i, sc in enumerate(config.stages):
        try:
            cls = import_stage(_cls_path(sc.type))
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"stages[{i}].type: cannot load {sc.type!r}: {exc}") from exc
        classes.append(cls)
        params.append(build(cls.Params, sc.params, f"stages[{i}].params"))
    if not classes[0].is_source():
        raise ConfigError(f"stages[0] ({config.stages[0].name}): the first stage must be a source")
    for i in range(1, len(classes)):
        if classes[i].is_source():
            raise ConfigError(
                f"stages[{i}] ({config.stages[i].name}): only the first stage may be a source"
            )
        produced, consumed = classes[i - 1].produces, classes[i].consumes
        if not any(issubclass(p, consumed) for p in produced):
            raise ConfigError(
                f"stages[{i}] ({config.stages[i].name}) consumes "
                f"{[c.__name__ for c in consumed]} but {config.stages[i - 1].name} produces "
                f"{[p.__name__ for p in produced]}"
            )
    live = classes[0].is_live(params[0])
    tc = config.transport
    graph_kind = "thread" if config.mode == "threads" else "process"
    kinds = [graph_kind if sc.run_as == "auto" else sc.run_as for sc in config.stages]
    protocol = tc.protocol
    if protocol == "auto":
        protocol = "inproc" if all(k == "thread" for k in kinds) else "ipc"
    if protocol == "inproc" and "process" in kinds:
        raise ConfigError(
            "transport.protocol: inproc only works when every stage runs as a thread "
            "(mode: threads, no run_as: process)"
        )
    run_id = uuid.uuid4().hex[:10]
    port = [tc.tcp_base_port]

    def addr(name: str, host: str = "") -> str:  # host: the reader's (it binds)
        p = 0
        if protocol == "tcp" and port[0]:
            p, port[0] = port[0], port[0] + 1
        return make_address(protocol, run_id, name, tcp_host=host or tc.tcp_host, tcp_port=p)

    plans = [
        StagePlan(
            sc.name,
            _cls_path(sc.type),
            dict(sc.params),
            config.stream_id,
            metrics_window=config.metrics.window,
            index=i,
            host=sc.host,
            run_as=kinds[i],
        )
        for i, sc in enumerate(config.stages)
    ]
    for i in range(1, len(plans)):
        sc = config.stages[i]
        policy = sc.policy if sc.policy != "auto" else tc.policy
        if policy == "auto":
            policy = "latest" if live else "block"
        spec = QueueSpec(
            f"q{i}-{sc.name}", addr(f"q{i}", sc.host), policy, sc.queue_size or tc.queue_size
        )
        plans[i].input = spec
        plans[i - 1].output = spec
    metrics_spec = None
    for i, cls in enumerate(classes):
        for channel in cls.side_inputs:
            spec = QueueSpec(
                f"side-{channel}-{plans[i].name}", addr(f"s{i}-{channel}", plans[i].host),
                "latest", 1,
            )  # fmt: skip
            plans[i].side_inputs[channel] = spec
            if channel == METRICS_CHANNEL:
                metrics_spec = spec
                continue
            writers = [j for j, c in enumerate(classes) if channel in c.side_outputs]
            if len(writers) > 1:
                raise ConfigError(f"side channel {channel!r}: more than one writer")
            for j in writers:
                plans[j].side_outputs[channel] = spec
    return GraphPlan(config, plans, classes, params, live, run_id, metrics_spec)


class Graph:
    """A planned graph, ready to ``run()`` once."""

    def __init__(self, config: PipelineConfig) -> None:
        self.plan = plan_graph(config)
        self.config = config

    def preflight(self) -> None:
        """Let each stage check its resources (source opens, port free) before starting."""
        for sc, cls, params in zip(
            self.config.stages, self.plan.classes, self.plan.params, strict=True
        ):
            try:
                cls.preflight(params)
            except Exception as exc:
                raise PreflightError(sc.name, exc) from exc

    def expected_frames(self) -> int | None:
        return self.plan.classes[0].expected_frames(self.plan.params[0])

    def run(
        self,
        on_progress: Callable[[dict[str, dict[str, Any]]], None] | None = None,
        timeout_s: float | None = None,
    ) -> GraphResult:
        """Run to completion; ``on_progress`` gets the latest per-stage metrics."""
        cfg, plans = self.config, self.plan.stages
        names = [p.name for p in plans]
        local = [p for p in plans if not p.host]  # the others run on their hosts
        remote = [p.name for p in plans if p.host]
        parties = len(local) + (1 if remote else 0)  # the control server releases remote ones
        threads_mode = all(p.run_as == "thread" for p in local)
        if threads_mode:
            zctx = zmq.Context()
            stop, drain = threading.Event(), threading.Event()
            status: Any = queue.Queue()
            barrier: Any = threading.Barrier(parties)
            acks = [threading.Event() for _ in plans]
            workers = [
                threading.Thread(
                    target=run_in_thread,
                    name=f"stage-{p.name}",
                    daemon=True,
                    args=(p, zctx, stop, drain, status, barrier, acks),
                )
                for p in local
            ]
        else:
            mctx = mp.get_context("spawn")
            zctx = zmq.Context()
            stop, drain = mctx.Event(), mctx.Event()
            status = mctx.Queue()
            barrier = mctx.Barrier(parties)
            acks = [mctx.Event() for _ in plans]
            level = logging.getLogger().getEffectiveLevel()
            workers = [  # a mix (run_as) is fine: threads share zctx, processes make their own
                mctx.Process(
                    target=run_in_process,
                    name=f"stage-{p.name}",
                    daemon=True,
                    args=(p, stop, drain, status, barrier, acks, level),
                )
                if p.run_as == "process"
                else threading.Thread(
                    target=run_in_thread,
                    name=f"stage-{p.name}",
                    daemon=True,
                    args=(p, zctx, stop, drain, status, barrier, acks),
                )
                for p in local
            ]
        control = None
        if remote:
            from pipeline.remote import ControlServer

            tc = cfg.transport
            control = ControlServer(zctx, tc.tcp_host, tc.control_port, remote, status, stop,
                                    drain, barrier, acks, tc.remote_timeout_s,
                                    tc.control_timeout_s)  # fmt: skip
        latest: dict[str, dict[str, Any]] = {}
        done: set[str] = set()
        errors: list[StageFailure] = []
        events: Counter[str] = Counter()
        interrupted = False
        metrics_tx = None
        t0 = time.monotonic()
        t0_wall = started_wall = time.time()
        try:
            try:
                if control is not None:
                    control.start()
                for w in workers:
                    w.start()
            except KeyboardInterrupt:
                interrupted = True
                drain.set()
            if self.plan.metrics_spec is not None:
                metrics_tx = QueueSender(zctx, self.plan.metrics_spec, stop)
            last_pub = time.monotonic()
            stop_seen = 0.0
            while len(done) < len(plans):
                try:
                    try:
                        item = status.get(timeout=0.1)
                    except queue.Empty:
                        item = None
                    if item is not None:
                        kind, name = item[0], item[1]
                        if kind == "metrics":
                            latest[name] = item[2]
                            if on_progress is not None:
                                on_progress(latest)
                        elif kind == "event":
                            events[item[2]] += 1
                            log.warning("%s: %s event: %s", name, item[2], item[3])
                        elif kind == "error":
                            errors.append(StageFailure(name, item[2], item[3], item[4]))
                            log.error("stage %r failed: %s", name, item[2])
                            if not item[4]:
                                stop.set()
                        elif kind == "started":
                            started_wall = item[2]
                        elif kind == "done":
                            latest[name] = item[2]
                            done.add(name)
                            if on_progress is not None:
                                on_progress(latest)
                    if not threads_mode:
                        for p, w in zip(local, workers, strict=True):
                            if p.run_as != "process":
                                continue
                            if p.name not in done and not w.is_alive() and status.empty():
                                time.sleep(0.2)  # let its last status messages arrive
                                if p.name not in done and status.empty():
                                    errors.append(
                                        StageFailure(
                                            p.name, f"process exited with code {w.exitcode}"
                                        )
                                    )
                                    done.add(p.name)
                                    stop.set()
                    now = time.monotonic()
                    if metrics_tx is not None and now - last_pub >= cfg.metrics.interval_s:
                        last_pub = now
                        metrics_tx.send(
                            encode(MetricsMessage(cfg.stream_id, now - t0, dict(latest)))
                        )
                    if timeout_s is not None and now - t0 > timeout_s and not stop.is_set():
                        errors.append(StageFailure("graph", f"timed out after {timeout_s} s"))
                        stop.set()
                    if stop.is_set():
                        stop_seen = stop_seen or now
                        if now - stop_seen > STOP_GRACE_S:
                            for name in names:
                                if name not in done:
                                    errors.append(StageFailure(name, "did not stop in time"))
                            break
                except KeyboardInterrupt:
                    if interrupted:
                        stop.set()
                    else:
                        interrupted = True
                        log.warning("interrupt: draining (Ctrl-C or SIGTERM again to stop now)")
                        drain.set()
        finally:
            if errors and not all(e.drained for e in errors):
                stop.set()
            started = [w for w in workers if w.ident is not None]
            for w in started:
                w.join(timeout=5)
                if isinstance(w, mp.process.BaseProcess) and w.is_alive():
                    w.kill()  # stage processes ignore SIGTERM (see worker.run_in_process)
                    w.join(timeout=2)
            if metrics_tx is not None:
                metrics_tx.close(linger_ms=0)
            if control is not None:
                control.close()
            if all(not w.is_alive() for w in started):
                zctx.term()
            shutil.rmtree(
                Path(tempfile.gettempdir()) / f"nbf-{self.plan.run_id}", ignore_errors=True
            )
        # fps counts from the moment every stage was set up and the source started
        run_s = time.time() - started_wall
        summary = summarize(latest, names, run_s)
        summary["startup_s"] = round(started_wall - t0_wall, 3)
        summary["events"] = dict(events)
        summary["mode"] = cfg.mode
        summary["policy"] = plans[1].input.policy if len(plans) > 1 else "none"
        # drain is only ever set by an interrupt (here, or on a remote stage's host)
        return GraphResult(not errors, summary, errors, interrupted or drain.is_set())


__all__ = ["REGISTRY", "Graph", "GraphResult", "PreflightError", "StageFailure", "plan_graph"]
