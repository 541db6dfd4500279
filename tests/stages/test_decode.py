import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from pipeline.config import build
from pipeline.messages import Event, FrameMessage
from stages.base import StageContext
from stages.decode import (
    CameraNotFoundError,
    DecodeParams,
    DecodeStage,
    NotAVideoError,
    SourceError,
    SourceNotFoundError,
    StreamLostError,
    TruncatedVideoError,
    classify,
)
from tests.pipeline.media import red_level_index, write_clip


def make_stage(**params):
    p = build(DecodeParams, params)
    events = []
    ctx = StageContext(
        "decode", "s0", lambda c, m: None, lambda: False, events.append, logging.getLogger("test")
    )
    return DecodeStage(p, ctx), p


def test_file_frames_rgb_indexed_timed(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", n=20, width=64, height=48)
    stage, p = make_stage(source=str(clip))
    DecodeStage.preflight(p)
    assert DecodeStage.expected_frames(p) == 20 and not DecodeStage.is_live(p)
    msgs = list(stage.produce())
    assert all(isinstance(m, FrameMessage) for m in msgs)
    assert [m.index for m in msgs] == list(range(20))
    assert [red_level_index(m.image) for m in msgs] == list(range(20))
    np.testing.assert_allclose([m.timestamp for m in msgs], np.arange(20) / 25, atol=1e-6)
    m = msgs[0]
    assert m.image.dtype == np.uint8 and m.image.shape == (48, 64, 3) and m.fps == 25
    assert m.image[30, 30, 0] < 30 and m.image[30, 30, 2] > 40  # RGB, not BGR


def test_realtime_paces_at_native_rate(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", n=10, fps=25)
    stage, _ = make_stage(source=str(clip), realtime=True)
    t0 = time.monotonic()
    assert len(list(stage.produce())) == 10
    assert time.monotonic() - t0 >= 9 / 25 - 0.02


def test_classify_sources():
    def k(src):
        return classify(build(DecodeParams, {"source": src}))

    assert k(0) == ("camera", "/dev/video0")
    assert k("2") == ("camera", "/dev/video2")
    assert k("/dev/video1")[0] == "camera"
    assert k("rtsp://h/x")[0] == "stream" and k("http://h/x.ts")[0] == "stream"
    assert k("a/b.mp4") == ("file", "a/b.mp4")
    with pytest.raises(SourceError, match="no source"):
        k("")


def test_preflight_errors(tmp_path):
    with pytest.raises(SourceNotFoundError):
        DecodeStage.preflight(build(DecodeParams, {"source": str(tmp_path / "x.mp4")}))
    txt = tmp_path / "x.mp4"
    txt.write_bytes(b"\x00\x01junk" * 100)
    with pytest.raises(NotAVideoError):
        DecodeStage.preflight(build(DecodeParams, {"source": str(txt)}))
    with pytest.raises(CameraNotFoundError, match="does not exist"):
        DecodeStage.preflight(build(DecodeParams, {"source": 93}))


def test_truncated_file_yields_frames_then_error(tmp_path):
    clip = write_clip(tmp_path / "c.mkv", n=30)
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(clip.read_bytes()[: int(clip.stat().st_size * 0.5)])
    stage, _ = make_stage(source=str(cut))
    got = []
    with pytest.raises(TruncatedVideoError, match="truncated"):
        for m in stage.produce():
            got.append(m)
    frames = [m for m in got if isinstance(m, FrameMessage)]
    assert 0 < len(frames) < 30 and isinstance(got[-1], Event) and got[-1].kind == "error"
    assert [red_level_index(f.image) for f in frames] == list(range(len(frames)))


class _Server:
    """HTTP server whose first connection dies half-way; later ones serve the whole clip until
    ``full`` connections were served, then answer 404."""

    def __init__(self, data: bytes, full: int = 1):
        served = {"n": 0}

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                served["n"] += 1
                if served["n"] > 1 + full:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if served["n"] == 1:  # the connection drops mid-way
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                else:
                    self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/clip.ts"
        self.served = served
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_http_stream_that_drops_is_reopened_and_gap_reported(tmp_path):
    clip = write_clip(tmp_path / "c.ts", n=60)
    server = _Server(clip.read_bytes(), full=1)
    try:
        stage, p = make_stage(
            source=server.url,
            reconnect_attempts=2,
            backoff_initial_s=0.05,
            backoff_max_s=0.1,
            read_timeout_s=2.0,
        )
        assert DecodeStage.is_live(p)
        got = []
        with pytest.raises(StreamLostError, match="2 reconnect attempts failed"):
            for m in stage.produce():
                got.append(m)
    finally:
        server.close()
    kinds = [m.kind if isinstance(m, Event) else "frame" for m in got]
    gap = kinds.index("gap")
    first, second = got[:gap], [m for m in got[gap + 1 :] if isinstance(m, FrameMessage)]
    assert 0 < len(first) < 60 and len(second) == 60  # second connection: the whole clip
    assert kinds.count("gap") == 1 and kinds[-1] == "error"
    assert got[gap].data["gap_s"] >= 0 and "reconnected" in got[gap].message
    frames = [m for m in got if isinstance(m, FrameMessage)]
    assert [f.index for f in frames] == list(range(len(frames)))  # indices stay consecutive
    ts = [f.timestamp for f in frames]
    assert ts == sorted(ts)
    assert [red_level_index(f.image) for f in second] == list(range(60))


def test_stream_that_cannot_be_opened_fails_clearly():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stage, _ = make_stage(source=f"http://127.0.0.1:{port}/x.ts", open_timeout_s=2)
    with pytest.raises(SourceError, match="cannot open"):
        next(stage.produce())


def test_stream_gap_counted_and_published_as_event(tmp_path):
    from pipeline.graph import Graph
    from tests.pipeline.media import free_port
    from tests.pipeline.test_graph import Subscriber, make_config

    clip = write_clip(tmp_path / "c.ts", n=30)
    server = _Server(clip.read_bytes(), full=1)
    ep = f"tcp://127.0.0.1:{free_port()}"
    sub = Subscriber(ep)
    try:
        cfg = make_config(
            server.url, ep, decode={"reconnect_attempts": 1, "backoff_initial_s": 0.05}
        )
        result = Graph(cfg).run(timeout_s=30)
    finally:
        server.close()
        sub.close()
    assert result.summary["policy"] == "latest"  # live source: drop, don't queue
    assert result.summary["events"] == {"gap": 1, "error": 1}
    assert [e.stage for e in result.errors] == ["decode"] and result.errors[0].drained
    events = [m for t, m in sub.msgs if t.endswith("/event")]
    assert [e["kind"] for e in events] == ["gap", "error"]
    s = result.summary
    assert s["published"] + s["dropped"] == s["frames"] > 30
