"""The loop that runs one stage in a thread or a spawned process.

Everything a worker needs arrives as plain data (``StagePlan``); the stage object, its sockets and
its models are created here, in the worker, never pickled.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import os
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import zmq

from pipeline.config import build
from pipeline.messages import (
    EndOfStream,
    Event,
    FrameMessage,
    Message,
    MessageDecodeError,
    decode,
    encode,
    is_control,
)
from pipeline.metrics import StageMetrics
from pipeline.transport import MALFORMED, QueueReceiver, QueueSender, QueueSpec, StoppedError
from stages.base import DrainableError, Stage, StageContext

log = logging.getLogger("nbf.pipeline")
_METRICS_EVERY_S = 0.2
ORPHAN_GRACE_S = 5.0  # after the supervisor died: time to stop before a hard exit


@dataclass
class StagePlan:
    """Plain-data description of one stage of a built graph."""

    name: str
    cls_path: str  # "package.module:Class"
    params: dict[str, Any]
    stream_id: str
    input: QueueSpec | None = None
    output: QueueSpec | None = None
    side_inputs: dict[str, QueueSpec] = field(default_factory=dict)
    side_outputs: dict[str, QueueSpec] = field(default_factory=dict)
    metrics_window: int = 2048
    index: int = 0  # position in the chain
    host: str = ""  # "" = run by the supervisor, else by python -m pipeline.remote on that host
    run_as: str = "thread"  # "thread" | "process" (resolved from the config)


def import_stage(cls_path: str) -> type[Stage]:
    """Import ``package.module:Class`` and check that it is a Stage."""
    mod_name, _, cls_name = cls_path.partition(":")
    if not mod_name or not cls_name:
        raise ValueError(f"stage type must be 'package.module:Class', got {cls_path!r}")
    cls = getattr(importlib.import_module(mod_name), cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Stage)):
        raise ValueError(f"{cls_path} is not a Stage subclass")
    return cls


class _Worker:
    def __init__(
        self,
        plan: StagePlan,
        zctx: zmq.Context,
        stop: Any,
        drain: Any,
        status: Any,
        acks: list[Any],
    ):
        self.plan = plan
        self.acks = acks
        self.zctx = zctx
        self.stop = stop
        self.drain = drain
        self.status = status
        self.metrics = StageMetrics(plan.name, window=plan.metrics_window)
        self.rx: QueueReceiver | None = None
        self.tx: QueueSender | None = None
        self.side_rx: dict[str, QueueReceiver] = {}
        self.side_tx: dict[str, QueueSender] = {}
        self.stage: Stage | None = None
        self._last_metrics = 0.0

    # ------------------------------------------------------------ helpers
    def _snapshot(self) -> dict[str, Any]:
        m = self.metrics
        m.dropped = (self.rx.dropped if self.rx else 0) + (self.tx.dropped if self.tx else 0)
        return m.snapshot()

    def _maybe_metrics(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_metrics >= _METRICS_EVERY_S:
            self._last_metrics = now
            self.status.put(("metrics", self.plan.name, self._snapshot()))

    def _report(self, ev: Event) -> None:
        self.metrics.events += 1
        self.status.put(("event", self.plan.name, ev.kind, ev.message, ev.frame_index))

    def _emit_side(self, channel: str, msg: Message) -> None:
        tx = self.side_tx.get(channel)
        if tx is None:
            if channel not in type(self.stage).side_outputs:
                raise ValueError(f"stage {self.plan.name!r} has no side output {channel!r}")
            return  # declared but nobody listens
        tx.send(encode(msg), control=False)

    def _send(self, msg: Message) -> None:
        if isinstance(msg, Event) and msg.stage == self.plan.name:
            self._report(msg)
        if self.tx is None:  # terminal stage: what it returns is what it delivered
            if isinstance(msg, FrameMessage):
                self.metrics.frames_out += 1
            return
        sent = self.tx.send(encode(msg), control=is_control(msg))
        if sent and isinstance(msg, FrameMessage):
            self.metrics.frames_out += 1

    def _poll_side(self) -> None:
        for channel, rx in self.side_rx.items():
            while (got := rx.recv_nowait()) is not None:
                try:
                    msg = decode(got[1])
                except MessageDecodeError as exc:
                    self.metrics.malformed += 1
                    log.warning(
                        "%s: malformed message on side input %s: %s", self.plan.name, channel, exc
                    )
                    continue
                self.stage.on_side(channel, msg)

    # ------------------------------------------------------------ loops
    def _run_source(self) -> None:
        gen = self.stage.produce()
        reason = "eof"
        try:
            while True:
                if self.stop.is_set():
                    raise StoppedError(self.plan.name)
                if self.drain.is_set():
                    reason = "interrupt"
                    break
                self._poll_side()
                t0 = time.perf_counter()
                try:
                    msg = next(gen)
                except StopIteration:
                    break
                if isinstance(msg, FrameMessage):
                    self.metrics.record_latency(time.perf_counter() - t0)
                self._send(msg)
                self._maybe_metrics()
        except DrainableError:
            self._finish("error")
            raise
        finally:
            gen.close()
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        for msg in self.stage.flush():
            self._send(msg)
        if self.tx is not None:
            eos = EndOfStream(self.plan.stream_id, reason=reason, frames=self.metrics.frames_out)
            self.tx.send(encode(eos), control=True)
            self._wait_downstream()

    def _wait_downstream(self) -> None:
        # Keep our sockets open until the next stage has the end of stream: closing a PUSH
        # socket can discard queued messages (seen with ipc even with LINGER), so the
        # downstream stage acknowledges instead.
        ack = self.acks[self.plan.index + 1]
        while not ack.wait(0.05):
            if self.stop.is_set():
                raise StoppedError(self.plan.name)

    def _run_filter(self) -> None:
        accepted = (*type(self.stage).consumes, EndOfStream)
        while True:
            if self.stop.is_set():
                raise StoppedError(self.plan.name)
            self._poll_side()
            self._maybe_metrics()
            got = self.rx.recv()
            if got is None:
                continue
            flag, payload = got
            try:
                if flag == MALFORMED:
                    raise MessageDecodeError("bad queue framing")
                msg = decode(payload)
                if not isinstance(msg, (*accepted, Event)):
                    raise MessageDecodeError(f"unexpected message {type(msg).__name__}")
            except MessageDecodeError as exc:
                self.metrics.malformed += 1
                log.warning("%s: dropped malformed message: %s", self.plan.name, exc)
                continue
            if isinstance(msg, EndOfStream):
                self.acks[self.plan.index].set()
                for out in self.stage.flush():
                    self._send(out)
                if self.tx is not None:
                    self.tx.send(encode(msg), control=True)
                    self._wait_downstream()
                return
            if isinstance(msg, Event) and Event not in accepted:
                if self.tx is not None:
                    self.tx.send(payload, control=True)
                continue
            if isinstance(msg, FrameMessage):
                self.metrics.frames_in += 1
            t0 = time.perf_counter()
            outs = list(self.stage.process(msg))
            if isinstance(msg, FrameMessage):
                self.metrics.record_latency(time.perf_counter() - t0)
            for out in outs:
                self._send(out)

    # ------------------------------------------------------------ entry
    def run(self, barrier: Any) -> None:
        plan = self.plan
        try:
            cls = import_stage(plan.cls_path)
            params = build(cls.Params, plan.params, f"{plan.name}.params")
            ctx = StageContext(
                name=plan.name,
                stream_id=plan.stream_id,
                emit_side=self._emit_side,
                draining=self.drain.is_set,
                report=self._report,
                logger=logging.getLogger(f"nbf.stage.{plan.name}"),
            )
            if plan.input is not None:
                self.rx = QueueReceiver(self.zctx, plan.input)
            self.side_rx = {c: QueueReceiver(self.zctx, s) for c, s in plan.side_inputs.items()}
            self.stage = cls(params, ctx)
            self.stage.setup()
            barrier.wait()
            if plan.input is None:
                self.status.put(("started", plan.name, time.time()))
            if plan.output is not None:
                self.tx = QueueSender(self.zctx, plan.output, self.stop)
            self.side_tx = {
                c: QueueSender(self.zctx, s, self.stop) for c, s in plan.side_outputs.items()
            }
            if self.rx is None:
                self._run_source()
            else:
                self._run_filter()
        except (StoppedError, threading.BrokenBarrierError):
            pass
        except BaseException as exc:
            drainable = isinstance(exc, DrainableError)
            self.status.put(
                (
                    "error",
                    plan.name,
                    f"{type(exc).__name__}: {exc}",
                    traceback.format_exc(),
                    drainable,
                )
            )
            with contextlib.suppress(Exception):
                barrier.abort()
        finally:
            try:
                if self.stage is not None:
                    self.stage.close()
            except Exception as exc:  # a failing close must not hide the real outcome
                log.warning("%s: close failed: %s", plan.name, exc)
            self.status.put(("done", plan.name, self._snapshot()))
            for rx in (self.rx, *self.side_rx.values()):
                if rx is not None:
                    rx.close()
            # Delivery of the main output was acknowledged (end of stream reached the next
            # stage) or the graph is stopping; side channels are best effort. No linger.
            for tx in (self.tx, *self.side_tx.values()):
                if tx is not None:
                    tx.close(linger_ms=0)


def run_in_thread(plan: StagePlan, zctx: zmq.Context, stop, drain, status, barrier, acks) -> None:
    """Thread entry: shares the graph's zmq context (inproc needs one context)."""
    _Worker(plan, zctx, stop, drain, status, acks).run(barrier)


def _watch_parent(stop, grace_s: float = ORPHAN_GRACE_S) -> None:
    """Stop this stage process when the supervisor dies (killed, crashed): without it the
    stage would run on as an orphan, holding its CPU, GPU and sockets. ``stop`` is shared with
    the other stage processes, so they all stop; whoever has not left after ``grace_s``
    (blocked in a long call) exits hard."""
    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        mp_connection.wait([parent.sentinel])
        log.error("supervisor process exited: stopping")
        stop.set()
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def run_in_process(plan: StagePlan, stop, drain, status, barrier, acks, log_level: int) -> None:
    """Spawned-process entry: own zmq context. Ctrl-C and SIGTERM are handled by the parent
    (drain, then stop), which sends them here through ``drain``/``stop``: a signal sent to the
    whole process group (a terminal's Ctrl-C, systemd's stop) must not kill a stage mid-frame."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    _watch_parent(stop)
    zctx = zmq.Context()
    try:
        _Worker(plan, zctx, stop, drain, status, acks).run(barrier)
    finally:
        zctx.term()
