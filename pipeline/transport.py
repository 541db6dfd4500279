"""Bounded queues carried by ZeroMQ PUSH/PULL.

A queue is one PUSH (sender, connects) and one PULL (receiver, binds). The endpoint is inproc for
threads, ipc for processes and tcp across hosts. Each queue has a policy:

- ``block`` (recorded video): high-water marks of ``size`` on both ends; the sender waits while
  the queue is full, so every message arrives exactly once and in order.
- ``latest`` (live sources): high-water marks of 1; the sender never waits for data messages (a
  full queue drops the new frame and counts it) and the receiver drains what is waiting and keeps
  only the newest frame (the older ones are counted as dropped).

Control messages (events, end of stream) are never dropped under either policy. On the wire a
queue message is two frames ``[flag, payload]`` with flag ``b"D"`` (data) or ``b"C"`` (control).
"""

from __future__ import annotations

import os
import socket
import tempfile
from collections import deque
from dataclasses import dataclass
from typing import Protocol

import zmq

DATA = b"D"
CONTROL = b"C"
MALFORMED = b"?"
_POLL_MS = 50


class StoppedError(Exception):
    """The graph asked this stage to stop while it was waiting on a queue."""


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass(frozen=True)
class QueueSpec:
    """Where a queue lives and how it behaves; plain data, safe to send to a child process."""

    name: str
    address: str
    policy: str  # "block" | "latest"
    size: int

    def __post_init__(self) -> None:
        if self.policy not in ("block", "latest"):
            raise ValueError(f"policy must be 'block' or 'latest', got {self.policy!r}")
        if self.size < 1:
            raise ValueError(f"size must be >= 1, got {self.size}")


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (for tcp queues with tcp_base_port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def make_address(
    protocol: str, run_id: str, name: str, *, tcp_host: str = "127.0.0.1", tcp_port: int = 0
) -> str:
    """Endpoint for queue ``name`` of run ``run_id``."""
    if protocol == "inproc":
        return f"inproc://nbf-{run_id}-{name}"
    if protocol == "ipc":
        d = os.path.join(tempfile.gettempdir(), f"nbf-{run_id}")
        os.makedirs(d, mode=0o700, exist_ok=True)
        return f"ipc://{d}/{name}.sock"
    if protocol == "tcp":
        return f"tcp://{tcp_host}:{tcp_port or free_tcp_port(tcp_host)}"
    raise ValueError(f"protocol must be inproc, ipc or tcp, got {protocol!r}")


class QueueSender:
    """The producing end of a queue. Not thread-safe: one per stage thread."""

    def __init__(self, ctx: zmq.Context, spec: QueueSpec, stop: StopFlag) -> None:
        self.spec = spec
        self._stop = stop
        self.dropped = 0
        self.sent = 0
        self._sock = ctx.socket(zmq.PUSH)
        latest = spec.policy == "latest"
        self._sock.setsockopt(zmq.SNDHWM, 1 if latest else spec.size)
        # Let queued messages (at least the end-of-stream) flush when the stage exits.
        self._sock.setsockopt(zmq.LINGER, 2000)
        self._sock.connect(spec.address)

    def send(self, payload: bytes, *, control: bool = False) -> bool:
        """Send one message; returns False when a ``latest`` queue dropped it."""
        parts = [CONTROL if control else DATA, payload]
        if self.spec.policy == "latest" and not control:
            try:
                self._sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            except zmq.Again:
                self.dropped += 1
                return False
            self.sent += 1
            return True
        while True:
            try:
                self._sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                self.sent += 1
                return True
            except zmq.Again:
                if self._stop.is_set():
                    raise StoppedError(self.spec.name) from None
                self._sock.poll(_POLL_MS, zmq.POLLOUT)

    def close(self, linger_ms: int | None = None) -> None:
        self._sock.close(linger=linger_ms)


class QueueReceiver:
    """The consuming end of a queue (binds). Not thread-safe: one per stage thread."""

    def __init__(self, ctx: zmq.Context, spec: QueueSpec) -> None:
        self.spec = spec
        self.dropped = 0
        self._pending: deque[tuple[bytes, bytes]] = deque()
        self._sock = ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.RCVHWM, 1 if spec.policy == "latest" else spec.size)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(spec.address)

    def _read_one(self) -> tuple[bytes, bytes]:
        parts = self._sock.recv_multipart(flags=zmq.NOBLOCK)
        if len(parts) != 2 or parts[0] not in (DATA, CONTROL):
            return MALFORMED, parts[-1]
        return parts[0], parts[1]

    def recv(self, timeout_ms: int = _POLL_MS) -> tuple[bytes, bytes] | None:
        """Next ``(flag, payload)``, or None if nothing arrived within ``timeout_ms``."""
        if not self._pending:
            if not self._sock.poll(timeout_ms, zmq.POLLIN):
                return None
            if self.spec.policy == "block":
                return self._read_one()
            got: list[tuple[bytes, bytes]] = []
            while True:
                try:
                    got.append(self._read_one())
                except zmq.Again:
                    break
            data_idx = [i for i, (flag, _) in enumerate(got) if flag == DATA]
            stale = set(data_idx[:-1])
            self.dropped += len(stale)
            self._pending.extend(m for i, m in enumerate(got) if i not in stale)
        return self._pending.popleft()

    def recv_nowait(self) -> tuple[bytes, bytes] | None:
        return self.recv(timeout_ms=0)

    def close(self) -> None:
        self._sock.close(linger=0)
