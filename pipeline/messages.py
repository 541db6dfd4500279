"""Messages that cross stage boundaries, and their msgpack wire codec.

Every message is a dataclass. On the wire a message is one msgpack map
``{"nbf": WIRE_VERSION, "type": <tag>, "body": {...}}``; numpy arrays inside the body are maps
``{"__nd__": 1, "dtype": "<f4", "shape": [...], "data": <bytes>}`` (no pickle, no object dtype).
Decoding checks the envelope, the version, every field name and type, and raises
``MessageDecodeError`` on anything malformed. docs/schema.md documents each type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

WIRE_VERSION = 1
TRACK_STATES = ("tracking", "occluded", "lost")
_ALLOWED_DTYPES = frozenset(
    np.dtype(t).str for t in ("u1", "i1", "<u2", "<i2", "<i4", "<u4", "<i8", "<f2", "<f4", "<f8")
) | {"|b1"}
_MAX_NDIM = 8


class MessageDecodeError(ValueError):
    """Raised when bytes received on a queue are not a valid message of this wire version."""


@dataclass
class TrackPrediction:
    """A box for ``track_id`` predicted from the body fitted in an earlier frame (pixels, xyxy)."""

    track_id: int
    box: np.ndarray  # [4] float32 x1, y1, x2, y2, predicted for frame ``frame_index + 1``
    confidence: float
    frame_index: int  # the frame the fit that predicted this box was made on
    velocity: np.ndarray | None = None  # [4] float32 box change per frame (pixels / frame)


@dataclass
class Person:
    """One tracked person in one frame. SMPL fields stay ``None`` until a fit stage fills them."""

    track_id: int
    state: str  # "tracking" | "occluded" | "lost"
    box: np.ndarray  # [4] float32 x1, y1, x2, y2 in frame pixels
    score: float  # detector score (or prediction confidence when the box came from the fit)
    box_source: str = "detector"  # "detector" | "fit" | "carried"
    global_orient: np.ndarray | None = None  # [3] axis-angle, camera frame
    body_pose: np.ndarray | None = None  # [69] axis-angle, joints 1..23 in SMPL order
    betas: np.ndarray | None = None  # [10]
    transl: np.ndarray | None = None  # [3] metres, camera frame
    joints3d: np.ndarray | None = None  # [24, 3] metres, camera frame
    joints2d: np.ndarray | None = None  # [24, 2] frame pixels
    likelihood: float | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)  # stage-private per-person arrays


@dataclass
class FrameMessage:
    """A decoded frame and everything later stages attach to it."""

    stream_id: str
    index: int  # 0-based, consecutive per source (gaps are reported as events)
    timestamp: float  # seconds from the start of the stream
    image: np.ndarray | None  # [H, W, 3] uint8 RGB
    fps: float = 0.0  # nominal source rate (0 when unknown)
    persons: list[Person] = field(default_factory=list)
    tracks: list[TrackPrediction] = field(default_factory=list)  # fed back from the fit
    detected: bool = False  # whether the detector ran on this frame
    extras: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class TrackFeedback:
    """Side channel fit -> detect: boxes predicted for the next frame from the current fit,
    and the upstream ids the fit rejected (their body does not explain the image: ``lost``)."""

    stream_id: str
    frame_index: int
    tracks: list[TrackPrediction] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)


@dataclass
class Event:
    """Something users should know that is not a frame: a gap, a reconnect, an error."""

    stream_id: str
    kind: str  # "gap" | "reconnect" | "error" | "info"
    stage: str
    message: str
    frame_index: int = -1
    data: dict[str, Any] = field(default_factory=dict)  # plain msgpack values only


@dataclass
class EndOfStream:
    """The last message a stage forwards; every stage drains and exits after it."""

    stream_id: str
    reason: str = "eof"  # "eof" | "interrupt" | "error"
    frames: int = 0  # frames the source emitted


@dataclass
class MetricsMessage:
    """Per-stage counters and latency percentiles (see pipeline/metrics.py)."""

    stream_id: str
    elapsed_s: float
    stages: dict[str, Any] = field(default_factory=dict)


Message = FrameMessage | TrackFeedback | Event | EndOfStream | MetricsMessage

_TAGS: dict[str, type] = {
    "frame": FrameMessage,
    "track_feedback": TrackFeedback,
    "event": Event,
    "eos": EndOfStream,
    "metrics": MetricsMessage,
}
_TAG_OF = {cls: tag for tag, cls in _TAGS.items()}
_NESTED = {"Person": Person, "TrackPrediction": TrackPrediction}


# ---------------------------------------------------------------- encoding


def _enc(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        if arr.dtype.str not in _ALLOWED_DTYPES:
            raise TypeError(f"array dtype {arr.dtype} cannot be sent")
        return {
            "__nd__": 1,
            "dtype": arr.dtype.str,
            "shape": list(arr.shape),
            "data": arr.tobytes(),
        }
    if dataclasses.is_dataclass(value):
        return {f.name: _enc(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _enc(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_enc(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def encode(msg: Message) -> bytes:
    """Serialise a message to bytes (msgpack)."""
    tag = _TAG_OF.get(type(msg))
    if tag is None:
        raise TypeError(f"not a pipeline message: {type(msg).__name__}")
    return msgpack.packb({"nbf": WIRE_VERSION, "type": tag, "body": _enc(msg)}, use_bin_type=True)


# ---------------------------------------------------------------- decoding


def _dec_array(v: Any, where: str) -> np.ndarray:
    if (
        not isinstance(v, dict)
        or v.get("__nd__") != 1
        or set(v) != {"__nd__", "dtype", "shape", "data"}
    ):
        raise MessageDecodeError(f"{where}: expected an encoded array")
    dtype, shape, data = v["dtype"], v["shape"], v["data"]
    if not isinstance(dtype, str) or dtype not in _ALLOWED_DTYPES:
        raise MessageDecodeError(f"{where}: dtype {dtype!r} not allowed")
    if (
        not isinstance(shape, list)
        or len(shape) > _MAX_NDIM
        or not all(isinstance(s, int) and s >= 0 for s in shape)
    ):
        raise MessageDecodeError(f"{where}: bad shape {shape!r}")
    if not isinstance(data, bytes):
        raise MessageDecodeError(f"{where}: array data must be bytes")
    dt = np.dtype(dtype)
    if int(np.prod(shape, dtype=np.int64)) * dt.itemsize != len(data):
        raise MessageDecodeError(f"{where}: {len(data)} bytes do not fill shape {shape} {dtype}")
    return np.frombuffer(data, dtype=dt).reshape(shape).copy()


def _dec(v: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if v is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _dec(v, inner, where)
    if tp is Any:
        return v
    if tp is np.ndarray:
        return _dec_array(v, where)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(v, list):
            raise MessageDecodeError(f"{where}: expected a list")
        return [_dec(x, inner, f"{where}[{i}]") for i, x in enumerate(v)]
    if origin is dict:
        _, inner = typing.get_args(tp)
        if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
            raise MessageDecodeError(f"{where}: expected a map with string keys")
        return {k: _dec(x, inner, f"{where}.{k}") for k, x in v.items()}
    if dataclasses.is_dataclass(tp):
        return _dec_dataclass(v, tp, where)
    if tp is float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise MessageDecodeError(f"{where}: expected a number")
        return float(v)
    if tp is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise MessageDecodeError(f"{where}: expected an integer")
        return v
    if tp in (str, bool):
        if not isinstance(v, tp):
            raise MessageDecodeError(f"{where}: expected {tp.__name__}")
        return v
    raise MessageDecodeError(f"{where}: unsupported field type {tp}")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls, globalns={**globals(), **_NESTED})
    return _HINTS[cls]


def _dec_dataclass(v: Any, cls: type, where: str) -> Any:
    if not isinstance(v, dict):
        raise MessageDecodeError(f"{where}: expected a map for {cls.__name__}")
    hints = _hints(cls)
    unknown = set(v) - set(hints)
    if unknown:
        raise MessageDecodeError(f"{where}: unknown field(s) {sorted(unknown)} in {cls.__name__}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in v:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MessageDecodeError(f"{where}: missing field {f.name!r} in {cls.__name__}")
            continue
        kwargs[f.name] = _dec(v[f.name], hints[f.name], f"{where}.{f.name}")
    obj = cls(**kwargs)
    if isinstance(obj, Person) and obj.state not in TRACK_STATES:
        raise MessageDecodeError(f"{where}.state: {obj.state!r} not one of {TRACK_STATES}")
    return obj


def decode(data: bytes) -> Message:
    """Parse bytes produced by :func:`encode`; raise ``MessageDecodeError`` if malformed."""
    try:
        env = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=1 << 30)
    except Exception as exc:  # msgpack raises several unrelated exception types
        raise MessageDecodeError(f"not msgpack: {exc}") from exc
    if not isinstance(env, dict) or set(env) != {"nbf", "type", "body"}:
        raise MessageDecodeError("missing envelope {nbf, type, body}")
    if env["nbf"] != WIRE_VERSION:
        raise MessageDecodeError(f"wire version {env['nbf']!r}, expected {WIRE_VERSION}")
    cls = _TAGS.get(env["type"]) if isinstance(env["type"], str) else None
    if cls is None:
        raise MessageDecodeError(f"unknown message type {env['type']!r}")
    return _dec_dataclass(env["body"], cls, env["type"])


def is_control(msg: Message) -> bool:
    """Control messages (events, end of stream) are never dropped by a ``latest`` queue."""
    return not isinstance(msg, FrameMessage | TrackFeedback | MetricsMessage)
