"""Publish stage: ZeroMQ PUB of poses, events and metrics, plus optional file sinks.

Topics (frame 1 of a two-frame multipart message; frame 2 is a msgpack map, docs/schema.md):
``<prefix>/<stream_id>/pose``, ``<prefix>/<stream_id>/event``, ``<prefix>/<stream_id>/metrics``.
PUB never blocks: a subscriber that does not read loses messages beyond ``sndhwm`` (memory stays
bounded); ``linger_ms`` bounds how long unsent messages are kept at exit.
"""

from __future__ import annotations

import contextlib
import errno
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zmq

from pipeline.messages import Event, FrameMessage, Message, MetricsMessage, Person
from stages.base import Stage
from stages.smoothing import SmoothingParams, TrackSmoother

SCHEMA = "nbf.pose"
SCHEMA_VERSION = 1
_SMPL_FIELDS = ("global_orient", "body_pose", "betas", "transl", "joints3d", "joints2d")


class PublishError(RuntimeError):
    """The publisher cannot bind its endpoint."""


@dataclass
class PublishParams:
    endpoint: str = "tcp://127.0.0.1:5555"
    topic_prefix: str = "nbf"
    sndhwm: int = 10  # messages queued per subscriber before PUB drops
    linger_ms: int = 500  # at exit, time to flush the last messages to live subscribers
    output_dir: str = ""  # "" = no file sinks
    jsonl: bool = True  # <output_dir>/poses.jsonl
    npz: bool = True  # <output_dir>/poses.npz
    overlay: bool = True  # <output_dir>/overlay.mp4
    smoothing: SmoothingParams = field(default_factory=SmoothingParams)
    wait_for_subscribers: int = 0  # hold the start of the run until this many have subscribed
    wait_timeout_s: float = 10.0
    vmc_target: str = ""  # "host:port" (e.g. 127.0.0.1:39539): also send poses as VMC over OSC
    vmc_track: int = -1  # track that drives the avatar; -1 = the first tracked person

    def __post_init__(self) -> None:
        if "/" in self.topic_prefix or not self.topic_prefix:
            raise ValueError("topic_prefix: must be non-empty and contain no '/'")
        if self.sndhwm < 1:
            raise ValueError("sndhwm: must be >= 1")


def _list(v: np.ndarray | None) -> list | None:
    return None if v is None else np.asarray(v, np.float64).round(6).tolist()


def person_payload(p: Person) -> dict[str, Any]:
    out: dict[str, Any] = {
        "track_id": p.track_id,
        "state": p.state,
        "box": _list(p.box),
        "score": round(float(p.score), 6),
        "box_source": p.box_source,
    }
    for k in _SMPL_FIELDS:
        out[k] = _list(getattr(p, k))
    out["likelihood"] = None if p.likelihood is None else float(p.likelihood)
    return out


def pose_payload(msg: FrameMessage) -> dict[str, Any]:
    """The public per-frame pose record (published, and written to poses.jsonl)."""
    h, w = msg.image.shape[:2] if msg.image is not None else (0, 0)
    return {
        "schema": SCHEMA,
        "version": SCHEMA_VERSION,
        "stream_id": msg.stream_id,
        "frame_index": msg.index,
        "timestamp": msg.timestamp,
        "image_size": [w, h],
        "detected": msg.detected,
        "persons": [person_payload(p) for p in msg.persons],
    }


def bind_pub(ctx: zmq.Context, endpoint: str, sndhwm: int, linger_ms: int) -> zmq.Socket:
    """A bound XPUB socket (a PUB that also sees subscriptions); ``PublishError`` if taken."""
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # report every subscription, not only new topics
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.LINGER, linger_ms)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        sock.close(linger=0)
        if exc.errno == errno.EADDRINUSE:
            raise PublishError(
                f"cannot publish on {endpoint}: address already in use (another process is "
                "bound there; pick another with --publish)"
            ) from exc
        raise PublishError(f"cannot publish on {endpoint}: {exc}") from exc
    return sock


class PublishStage(Stage):
    Params = PublishParams
    consumes = (FrameMessage, Event)
    produces = ()
    side_inputs = ("metrics",)

    @classmethod
    def preflight(cls, params: PublishParams) -> None:
        ctx = zmq.Context()  # own context: term() waits until the listener is really closed
        try:
            bind_pub(ctx, params.endpoint, params.sndhwm, 0).close(linger=0)
        finally:
            ctx.term()

    def setup(self) -> None:
        p = self.params
        self._zctx = zmq.Context()
        self.sock = bind_pub(self._zctx, p.endpoint, p.sndhwm, p.linger_ms)
        base = f"{p.topic_prefix}/{self.ctx.stream_id}/"
        self.topics = {k: (base + k).encode() for k in ("pose", "event", "metrics")}
        self.sinks: list[Any] = []
        self.npz = self.jsonl = self.overlay = None
        if p.output_dir:
            from stages.sinks import JsonlSink, NpzSink, OverlaySink

            out = Path(p.output_dir)
            self.jsonl = JsonlSink(out / "poses.jsonl") if p.jsonl else None
            self.npz = NpzSink(out / "poses.npz") if p.npz else None
            self.overlay = OverlaySink(out / "overlay.mp4") if p.overlay else None
        self.vmc = None
        if p.vmc_target:
            from engines.vmc import VMCSender

            track = None if p.vmc_track < 0 else p.vmc_track
            self.vmc = VMCSender.from_target(p.vmc_target, track=track)
        self.smoothers: dict[int, TrackSmoother] = {}
        self.subscriptions = 0
        if p.wait_for_subscribers > 0:
            deadline = time.monotonic() + p.wait_timeout_s
            while self.subscriptions < p.wait_for_subscribers:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise PublishError(
                        f"{p.endpoint}: {self.subscriptions} of "
                        f"{p.wait_for_subscribers} subscribers after "
                        f"{p.wait_timeout_s} s"
                    )
                if self.sock.poll(int(left * 1000) + 1, zmq.POLLIN):
                    self._read_subscriptions()

    def _read_subscriptions(self) -> None:
        """Consume XPUB subscription notices (keeps them from piling up)."""
        while True:
            try:
                note = self.sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if note[:1] == b"\x01":
                self.subscriptions += 1
            elif note[:1] == b"\x00":
                self.subscriptions -= 1

    def _pub(self, topic: str, payload: dict[str, Any]) -> None:
        # PUB never blocks; NOBLOCK also guards against a pathological full pipe.
        with contextlib.suppress(zmq.Again):
            self.sock.send_multipart([self.topics[topic], msgpack.packb(payload)], zmq.NOBLOCK)

    def _smooth(self, msg: FrameMessage) -> None:
        live = set()
        for person in msg.persons:
            live.add(person.track_id)
            sm = self.smoothers.setdefault(person.track_id, TrackSmoother(self.params.smoothing))
            sm(person, msg.timestamp)
        for tid in [t for t in self.smoothers if t not in live]:
            del self.smoothers[tid]

    def process(self, msg: Message) -> list[Message]:
        if isinstance(msg, Event):
            self._pub(
                "event",
                {
                    "schema": "nbf.event",
                    "version": SCHEMA_VERSION,
                    "stream_id": msg.stream_id,
                    "kind": msg.kind,
                    "stage": msg.stage,
                    "message": msg.message,
                    "frame_index": msg.frame_index,
                    "data": msg.data,
                },
            )
            return []
        if not isinstance(msg, FrameMessage):
            return []
        if self.params.smoothing.enabled:
            self._smooth(msg)
        payload = pose_payload(msg)
        self._read_subscriptions()
        self._pub("pose", payload)
        if self.vmc is not None:
            self.vmc.send_frame(payload)
        if self.jsonl is not None:
            self.jsonl.write(payload)
        if self.npz is not None:
            self.npz.write(msg)
        if self.overlay is not None:
            self.overlay.write(msg)
        return [msg]

    def on_side(self, channel: str, msg: Message) -> None:
        if isinstance(msg, MetricsMessage):
            self._pub(
                "metrics",
                {
                    "schema": "nbf.metrics",
                    "version": SCHEMA_VERSION,
                    "stream_id": msg.stream_id,
                    "elapsed_s": msg.elapsed_s,
                    "stages": msg.stages,
                },
            )

    def flush(self) -> list[Message]:
        for sink in (self.jsonl, self.npz, self.overlay):
            if sink is not None:
                sink.close()
        self.jsonl = self.npz = self.overlay = None
        return []

    def close(self) -> None:
        for sink in (
            getattr(self, "jsonl", None),
            getattr(self, "npz", None),
            getattr(self, "overlay", None),
        ):
            if sink is not None:
                sink.close()
        if getattr(self, "vmc", None) is not None:
            self.vmc.close()
        if hasattr(self, "sock"):
            self.sock.close()
            self._zctx.term()
