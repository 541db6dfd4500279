"""Stages on other hosts: the control channel and ``python -m pipeline.remote``.

A stage whose config has ``host: <address>`` is not started by the supervisor (``run_stream.py``);
``python -m pipeline.remote --config FILE --stage NAME`` runs it on that host. Both sides plan the
graph from the same config, so with ``transport.protocol: tcp`` and a fixed
``transport.tcp_base_port`` they agree on every queue's address: a queue binds on the host of the
stage that reads it (``tcp://<host>:<port>``), the writer connects there.

What a local worker shares with the supervisor through memory (status queue, stop/drain flags,
the start barrier, the end-of-stream acknowledgements) goes over one more pair of sockets:

- stage -> supervisor: PUSH to the supervisor's PULL at ``tcp://<tcp_host>:<control_port>``,
  msgpack tuples: the worker's status items (metrics, events, errors, done), ``("ready", name)``
  once set up, ``("ack", index)`` when it has the end of stream, ``("abort", name)``;
- supervisor -> stages: PUB at ``control_port + 1``, the whole control state (``stop``, ``drain``,
  ``go``, acknowledged indices) every 50 ms: idempotent, so a late subscriber misses nothing.

A remote stage that has not reported ready within ``transport.remote_timeout_s`` fails the run.
After the start each side watches the other (``transport.control_timeout_s``): a remote stage
sends ``("alive", name)`` every 0.5 s, and one that has not heard the broadcast for that long (the
supervisor was killed, the network went down) stops and exits with code 1; the supervisor fails
the run when a remote stage has been silent for that long. Ctrl-C or SIGTERM on a remote
stage's host drains the whole graph, as on the supervisor's (``("interrupt", name)``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgpack
import zmq

from pipeline.signals import handling

log = logging.getLogger("nbf.pipeline")
_BROADCAST_S = 0.05
_HEARTBEAT_S = 0.5
_NAMED = ("ready", "metrics", "event", "error", "done", "started", "alive", "abort", "interrupt")


def control_addresses(host: str, port: int) -> tuple[str, str]:
    """(status PULL address, state PUB address) of the supervisor."""
    return f"tcp://{host}:{port}", f"tcp://{host}:{port + 1}"


def _socket(zctx: zmq.Context, kind: int, *, bind: str = "", connect: str = "",
            linger: int = 0) -> zmq.Socket:  # fmt: skip
    sock = zctx.socket(kind)
    sock.setsockopt(zmq.LINGER, linger)
    if bind:
        sock.bind(bind)
    else:
        sock.connect(connect)
    return sock


class ControlServer:
    """Supervisor side: relays remote stages' status into the graph's status queue, sets local
    acks they send, and broadcasts stop/drain/go/acks to them (see the module docstring)."""

    def __init__(self, zctx: zmq.Context, host: str, port: int, remote: list[str],
                 status: Any, stop: Any, drain: Any, barrier: Any, acks: list[Any],
                 timeout_s: float, silence_s: float = 10.0) -> None:  # fmt: skip
        self.remote = set(remote)
        self.silence_s = silence_s
        self._heard: dict[str, float] = {}  # remote stage -> when it last sent anything
        self._finished: set[str] = set()  # remote stages that sent done (or were given up)
        self.status, self.stop, self.drain, self.barrier, self.acks = (
            status, stop, drain, barrier, acks
        )  # fmt: skip
        self.timeout_s = timeout_s
        pull_addr, pub_addr = control_addresses(host, port)
        self._pull = _socket(zctx, zmq.PULL, bind=pull_addr)
        self._pub = _socket(zctx, zmq.PUB, bind=pub_addr)
        self._ready: set[str] = set()
        self._go = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="remote-control", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _state(self) -> bytes:
        acked = [i for i, a in enumerate(self.acks) if a.is_set()]
        return msgpack.packb(
            {
                "stop": self.stop.is_set(),
                "drain": self.drain.is_set(),
                "go": self._go,
                "acks": acked,
            }
        )

    def _release(self) -> None:
        try:  # the supervisor is the barrier's last party: every local stage is set up too
            self.barrier.wait()
            now = time.monotonic()
            for name in self.remote:  # silence is counted from the start
                self._heard[name] = max(self._heard.get(name, now), now)
            self._go = True
        except threading.BrokenBarrierError:
            self.stop.set()

    def _run(self) -> None:
        t0 = time.monotonic()
        last = 0.0
        releasing = None
        while not self._done.is_set():
            if self._pull.poll(10):
                while True:
                    try:
                        item = msgpack.unpackb(self._pull.recv(zmq.NOBLOCK), use_list=True)
                    except zmq.Again:
                        break
                    except (ValueError, msgpack.UnpackException) as exc:
                        log.warning("control: dropped a malformed message: %s", exc)
                        continue
                    self._handle(item)
            if releasing is None and self._ready >= self.remote:
                releasing = threading.Thread(target=self._release, daemon=True)
                releasing.start()
            elif releasing is None and time.monotonic() - t0 > self.timeout_s:
                missing = sorted(self.remote - self._ready)
                self.status.put(("error", missing[0], f"remote stage(s) {missing} did not "
                                 f"connect within {self.timeout_s:g} s (start them with "
                                 "python -m pipeline.remote)", "", False))  # fmt: skip
                for name in missing:
                    self.status.put(("done", name, {}))
                with contextlib.suppress(Exception):
                    self.barrier.abort()
                releasing = threading.Thread()  # nothing more to release
            now = time.monotonic()
            if self._go:
                self._check_silence(now)
            if now - last >= _BROADCAST_S:
                last = now
                self._pub.send(self._state())

    def _check_silence(self, now: float) -> None:
        for name in sorted(self.remote - self._finished):
            silent = now - self._heard.get(name, now)
            if silent > self.silence_s:
                self.status.put(("error", name, f"remote stage went silent for {silent:.1f} s "
                                 "(killed, or the network is down)", "", False))  # fmt: skip
                self.status.put(("done", name, {}))
                self._finished.add(name)

    def _handle(self, item: Any) -> None:
        if not isinstance(item, list) or not item or not isinstance(item[0], str):
            log.warning("control: dropped a malformed message")
            return
        kind = item[0]
        if kind in _NAMED and len(item) >= 2 and isinstance(item[1], str):
            if item[1] in self._finished:
                return  # given up as silent: what it says now comes too late
            self._heard[item[1]] = time.monotonic()
            if kind == "done":
                self._finished.add(item[1])
        if kind == "alive":
            return
        if kind == "ready" and len(item) == 2:
            self._ready.add(str(item[1]))
        elif kind == "ack" and len(item) == 2 and isinstance(item[1], int):
            if 0 <= item[1] < len(self.acks):
                self.acks[item[1]].set()
        elif kind == "interrupt":  # Ctrl-C / SIGTERM on a remote stage's host: drain the graph
            log.warning("remote stage %s was interrupted: draining", item[1])
            self.drain.set()
        elif kind == "abort":
            with contextlib.suppress(Exception):
                self.barrier.abort()
        elif kind in ("metrics", "event", "error", "done", "started"):
            self.status.put(tuple(item))
        else:
            log.warning("control: unknown message %r", kind)

    def close(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        with contextlib.suppress(Exception):  # a last state, so remote stages see stop/acks
            self._pub.send(self._state())
        self._pull.close(0)
        self._pub.close(0)


class _RemoteState:
    """Stage side: the latest broadcast state, refreshed whenever a flag is read."""

    def __init__(self, zctx: zmq.Context, host: str, port: int, lost_after_s: float) -> None:
        pull_addr, pub_addr = control_addresses(host, port)
        self.lost_after_s = lost_after_s
        self.last_heard = 0.0
        self.lost = False  # no broadcast for lost_after_s after the start
        self._push = _socket(zctx, zmq.PUSH, connect=pull_addr, linger=2000)
        self._sub = _socket(zctx, zmq.SUB, connect=pub_addr)
        self._sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.state: dict[str, Any] = {"stop": False, "drain": False, "go": False, "acks": []}
        self.local_stop = False
        self._lock = threading.Lock()

    def refresh(self, timeout_ms: int = 0) -> None:
        with self._lock:
            if not self._sub.poll(timeout_ms):
                now = time.monotonic()
                if self.state["go"] and not self.lost and now - self.last_heard > self.lost_after_s:
                    self.lost = True
                    log.error("no word from the supervisor for %.0f s: stopping", self.lost_after_s)
                return
            self.last_heard = time.monotonic()
            while True:
                try:
                    got = msgpack.unpackb(self._sub.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                except (ValueError, msgpack.UnpackException):
                    continue
                if isinstance(got, dict):
                    self.state.update(got)

    def send(self, item: tuple) -> None:
        with self._lock:
            self._push.send(msgpack.packb(list(item)))

    def close(self) -> None:
        self._push.close()
        self._sub.close(0)


class _Flag:
    def __init__(self, state: _RemoteState, key: str) -> None:
        self._s, self._key = state, key

    def is_set(self) -> bool:
        self._s.refresh()
        stopping = self._key == "stop" and (self._s.local_stop or self._s.lost)
        return bool(self._s.state[self._key]) or stopping

    def set(self) -> None:  # a remote stage only ever stops itself
        self._s.local_stop = True


class _Status:
    def __init__(self, state: _RemoteState) -> None:
        self._s = state

    def put(self, item: tuple) -> None:
        self._s.send(item)


class _Ack:
    def __init__(self, state: _RemoteState, index: int) -> None:
        self._s, self._i = state, index

    def set(self) -> None:
        self._s.send(("ack", self._i))

    def wait(self, timeout: float) -> bool:
        self._s.refresh(int(timeout * 1000))
        return self._i in self._s.state["acks"]


class _Barrier:
    def __init__(self, state: _RemoteState, name: str) -> None:
        self._s, self._name = state, name

    def wait(self) -> None:
        self._s.send(("ready", self._name))
        while not self._s.state["go"]:
            if self._s.state["stop"]:
                raise threading.BrokenBarrierError
            self._s.refresh(50)

    def abort(self) -> None:
        self._s.send(("abort", self._name))


def _heartbeat(state: _RemoteState, name: str, finished: threading.Event,
               interrupted: threading.Event) -> None:  # fmt: skip
    """Tell the supervisor this stage is alive (and, once, that it was interrupted), and notice
    when the supervisor is not (even while the stage is in a long call); a stage that has not
    left ``ORPHAN_GRACE_S`` after that exits hard."""
    from pipeline.worker import ORPHAN_GRACE_S

    lost_at, told = None, False
    while not finished.wait(_HEARTBEAT_S):
        state.send(("alive", name))
        if interrupted.is_set() and not told:
            state.send(("interrupt", name))
            told = True
        state.refresh()
        if state.lost:
            lost_at = lost_at or time.monotonic()
            if time.monotonic() - lost_at > ORPHAN_GRACE_S:
                log.error("%s: did not stop %g s after losing the supervisor", name, ORPHAN_GRACE_S)
                os._exit(1)


@contextlib.contextmanager
def _interrupt_drains(interrupted: threading.Event, name: str) -> Iterator[None]:
    """While the stage runs, a first Ctrl-C or SIGTERM asks the supervisor to drain the graph
    (the heartbeat sends it: a signal handler must not touch the sockets); a second one stops
    this stage at once (``KeyboardInterrupt``)."""

    def handler(signum: int, frame: object) -> None:
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()
        log.warning("%s: %s: asking the supervisor to drain (again to stop now)", name,
                    signal.Signals(signum).name)  # fmt: skip

    with handling(handler, signal.SIGINT, signal.SIGTERM):
        yield


def run_remote_stage(config_path: str, stage_name: str) -> int:
    """Run one stage of the graph planned from ``config_path``; returns an exit code."""
    from pipeline.config import load_config
    from pipeline.graph import plan_graph
    from pipeline.worker import _Worker

    config = load_config(config_path)
    plan = plan_graph(config)
    names = [p.name for p in plan.stages]
    if stage_name not in names:
        raise SystemExit(f"error: no stage {stage_name!r} in {config_path} (stages: {names})")
    sp = plan.stages[names.index(stage_name)]
    if not sp.host:
        raise SystemExit(f"error: stage {stage_name!r} has no host: the supervisor runs it")
    tc = config.transport
    zctx = zmq.Context()
    state = _RemoteState(zctx, tc.tcp_host, tc.control_port, tc.control_timeout_s)
    failed = threading.Event()

    class _WatchStatus(_Status):
        def put(self, item: tuple) -> None:
            if item[0] == "error":
                failed.set()
                log.error("%s failed: %s", stage_name, item[2])
            super().put(item)

    acks = [_Ack(state, i) for i in range(len(plan.stages))]
    worker = _Worker(sp, zctx, _Flag(state, "stop"), _Flag(state, "drain"),
                     _WatchStatus(state), acks)  # fmt: skip
    log.info("stage %r on %s: waiting for the supervisor at %s", stage_name, sp.host,
             control_addresses(tc.tcp_host, tc.control_port)[0])  # fmt: skip
    finished, interrupted = threading.Event(), threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(state, stage_name, finished, interrupted),
                            name="heartbeat", daemon=True)  # fmt: skip
    beat.start()
    try:
        with _interrupt_drains(interrupted, stage_name):
            worker.run(_Barrier(state, stage_name))
    finally:
        finished.set()
        beat.join(timeout=2)
        state.close()
        zctx.term()
    return 1 if failed.is_set() or state.lost else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m pipeline.remote", description=__doc__.split("\n")[0]
    )
    ap.add_argument("--config", required=True, help="the pipeline config the supervisor runs")
    ap.add_argument("--stage", required=True, help="name of the stage to run here")
    ap.add_argument("--log-level", default="INFO")
    args = ap.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_remote_stage(args.config, args.stage)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
