"""Decode stage (PyAV): video files, RTSP/HTTP streams and V4L2 webcams -> RGB frames.

- Files: every frame, in order, with its presentation time; optional pacing at the native rate.
  A truncated file yields what decodes, then an ``error`` event, then fails (run exits non-zero).
- Streams and cameras: a dropped input is reopened with exponential backoff; each outage is
  reported as a ``gap`` event (counted), not a failure, until ``reconnect_attempts`` is exhausted.
- Missing files, non-video files, unsupported codecs and absent cameras fail in ``preflight``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from pipeline.messages import Event, FrameMessage, Message
from stages.base import DrainableError, Stage

STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "rtp")


class SourceError(ValueError):
    """The source cannot be used; the message says why."""


class SourceNotFoundError(SourceError):
    pass


class NotAVideoError(SourceError):
    pass


class UnsupportedCodecError(SourceError):
    pass


class CameraNotFoundError(SourceError):
    pass


class TruncatedVideoError(DrainableError):
    """A recording ended early or had undecodable data after some frames."""


class StreamLostError(DrainableError):
    """A live source could not be reopened within the allowed attempts."""


@dataclass
class DecodeParams:
    source: str | int = ""  # file path, URL, camera index (0) or /dev/videoN
    kind: str = "auto"  # auto | file | stream | camera
    realtime: bool = False  # files: pace frames at the native rate
    max_frames: int = 0  # 0: all
    camera_format: str = "v4l2"
    camera_size: str = ""  # e.g. "640x480" ("" = device default)
    camera_fps: float = 0.0  # 0 = device default
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    reconnect_attempts: int = 10  # consecutive reopen attempts of a live source; -1 = forever
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 8.0

    def __post_init__(self) -> None:
        if self.kind not in ("auto", "file", "stream", "camera"):
            raise ValueError(f"kind: {self.kind!r} is not one of auto, file, stream, camera")
        if self.backoff_initial_s <= 0 or self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_initial_s must be > 0 and <= backoff_max_s")


def classify(params: DecodeParams) -> tuple[str, str]:
    """(kind, url) for a source: camera index -> /dev/videoN, URL scheme -> stream, else file."""
    src = params.source
    if isinstance(src, int) or (isinstance(src, str) and src.strip().isdigit()):
        return "camera", f"/dev/video{int(src)}"
    src = str(src)
    if not src:
        raise SourceError("no source given (a file path, URL or camera index)")
    if params.kind != "auto":
        return params.kind, src
    if src.startswith("/dev/video"):
        return "camera", src
    scheme = src.split("://", 1)[0].lower() if "://" in src else ""
    if scheme in STREAM_SCHEMES:
        return "stream", src
    if scheme == "file":
        return "file", src[len("file://") :]
    return "file", src


def _open(
    params: DecodeParams, kind: str, url: str
) -> tuple[av.container.InputContainer, av.VideoStream]:
    fmt, opts = None, {}
    if kind == "camera":
        fmt = params.camera_format
        if params.camera_size:
            opts["video_size"] = params.camera_size
        if params.camera_fps:
            opts["framerate"] = str(params.camera_fps)
    elif kind == "stream" and url.startswith("rtsp"):
        opts["rtsp_transport"] = "tcp"
    try:
        container = av.open(
            url, format=fmt, options=opts, timeout=(params.open_timeout_s, params.read_timeout_s)
        )
    except av.error.FileNotFoundError as exc:
        if kind == "camera":
            raise CameraNotFoundError(f"camera {url} does not exist") from exc
        raise SourceNotFoundError(f"{url}: file not found") from exc
    except av.error.InvalidDataError as exc:
        raise NotAVideoError(f"{url}: not a video file or stream ({exc})") from exc
    if not container.streams.video:
        container.close()
        raise NotAVideoError(f"{url}: contains no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        container.close()
        raise UnsupportedCodecError(f"{url}: video codec is not supported by this FFmpeg build")
    stream.thread_type = "AUTO"
    return container, stream


class DecodeStage(Stage):
    """Source stage: yields ``FrameMessage`` with uint8 RGB ``[H, W, 3]`` images."""

    Params = DecodeParams
    consumes = ()
    produces = (FrameMessage, Event)

    @classmethod
    def is_live(cls, params: DecodeParams) -> bool:
        if params.source == "":
            return False  # not chosen yet (the runner fills it in)
        return classify(params)[0] != "file"

    @classmethod
    def preflight(cls, params: DecodeParams) -> None:
        kind, url = classify(params)
        if kind == "camera":
            if url.startswith("/dev/") and not os.path.exists(url):
                devices = sorted(str(p) for p in Path("/dev").glob("video*"))
                raise CameraNotFoundError(
                    f"camera {params.source!r}: {url} does not exist "
                    f"(available: {', '.join(devices) or 'none'})"
                )
            return
        if kind == "stream":
            return  # opened (with a timeout) when the stage starts
        if not Path(url).exists():
            raise SourceNotFoundError(f"{url}: file not found")
        if not Path(url).is_file():
            raise NotAVideoError(f"{url}: not a regular file")
        container, stream = _open(params, kind, url)
        try:
            try:
                next(container.decode(stream))
            except StopIteration:
                raise NotAVideoError(f"{url}: no decodable video frames") from None
            except av.FFmpegError as exc:
                raise UnsupportedCodecError(
                    f"{url}: cannot decode {stream.codec_context.name} video ({exc})"
                ) from exc
        finally:
            container.close()

    @classmethod
    def expected_frames(cls, params: DecodeParams) -> int | None:
        kind, url = classify(params)
        if kind != "file":
            return None
        try:
            container, stream = _open(params, kind, url)
        except SourceError:
            return None
        with container:
            n = stream.frames
            if not n and stream.duration and stream.average_rate:
                n = int(float(stream.duration * stream.time_base * stream.average_rate))
        if params.max_frames:
            n = min(n, params.max_frames) if n else params.max_frames
        return n or None

    def produce(self) -> Iterator[Message]:
        kind, url = classify(self.params)
        if kind == "file":
            yield from self._produce_file(url)
        else:
            yield from self._produce_live(kind, url)

    def _frame(self, frame: av.VideoFrame, index: int, ts: float, fps: float) -> FrameMessage:
        return FrameMessage(self.ctx.stream_id, index, ts, frame.to_ndarray(format="rgb24"), fps)

    def _produce_file(self, url: str) -> Iterator[Message]:
        p = self.params
        container, stream = _open(p, "file", url)
        fps = float(stream.average_rate or stream.guessed_rate or 0.0)
        declared = stream.frames
        duration = 0.0
        if stream.duration:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1e6
        index, t_first, last_ts, error = 0, None, 0.0, None
        wall0 = time.monotonic()
        try:
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else index / (fps or 25.0)
                t_first = t if t_first is None else t_first
                last_ts = t - t_first
                if p.realtime:
                    delay = wall0 + last_ts - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                yield self._frame(frame, index, last_ts, fps)
                index += 1
                if p.max_frames and index >= p.max_frames:
                    return
        except av.FFmpegError as exc:
            error = str(exc)
        finally:
            container.close()
        if error is None and declared and index < declared:
            error = f"{index} of {declared} frames decoded"
        elif (
            error is None
            and not declared
            and duration
            and fps
            and index
            and last_ts + 1.0 / fps < duration - 2.0 / fps
        ):
            error = f"stream ends at {last_ts + 1 / fps:.2f} s of {duration:.2f} s"
        if error is not None:
            msg = f"{url}: truncated or corrupt after frame {index - 1}: {error}"
            yield Event(self.ctx.stream_id, "error", self.ctx.name, msg, index - 1)
            raise TruncatedVideoError(msg)

    def _produce_live(self, kind: str, url: str) -> Iterator[Message]:
        p = self.params
        index, t0 = 0, None
        attempts, backoff, lost_at, first = 0, p.backoff_initial_s, None, True
        while not self.ctx.draining():
            try:
                container, stream = _open(p, kind, url)
            except (av.FFmpegError, OSError, SourceError) as exc:
                if first:
                    raise SourceError(f"cannot open {url}: {exc}") from exc
                attempts += 1
                if 0 <= p.reconnect_attempts < attempts:
                    msg = f"{url}: lost, {attempts - 1} reconnect attempts failed ({exc})"
                    yield Event(self.ctx.stream_id, "error", self.ctx.name, msg, index - 1)
                    raise StreamLostError(msg) from exc
                self.ctx.logger.warning(
                    "%s: reopen failed (%s); retry in %.2f s", url, exc, backoff
                )
                end = time.monotonic() + backoff
                while time.monotonic() < end and not self.ctx.draining():
                    time.sleep(0.02)
                backoff = min(backoff * 2, p.backoff_max_s)
                continue
            if lost_at is not None:
                gap = time.monotonic() - lost_at
                yield Event(
                    self.ctx.stream_id,
                    "gap",
                    self.ctx.name,
                    f"{url}: reconnected after {gap:.2f} s",
                    index - 1,
                    {"gap_s": round(gap, 3), "attempts": attempts + 1},
                )
            first, attempts, backoff = False, 0, p.backoff_initial_s
            fps = float(stream.average_rate or stream.guessed_rate or 0.0)
            reason = "end of stream"
            try:
                for frame in container.decode(stream):
                    now = time.monotonic()
                    t0 = now if t0 is None else t0
                    yield self._frame(frame, index, now - t0, fps)
                    index += 1
                    if (p.max_frames and index >= p.max_frames) or self.ctx.draining():
                        return
            except (av.FFmpegError, OSError) as exc:
                reason = str(exc)
            finally:
                container.close()
            lost_at = time.monotonic()
            self.ctx.logger.warning("%s: input lost after frame %d (%s)", url, index - 1, reason)
