import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from pipeline.config import PipelineConfig, build
from pipeline.graph import Graph
from pipeline.messages import FrameMessage, Person, TrackFeedback, TrackPrediction
from stages.base import Stage
from tests.pipeline.media import free_port, red_level_index, write_clip


class FrameTagStage(Stage):
    """Test stage: one person whose track id is the frame number read back from the pixels."""

    def process(self, msg):
        box = np.array([0, 0, 10, 10], np.float32)
        msg.persons = [Person(red_level_index(msg.image), "tracking", box, 1.0)]
        return [msg]


class FailStage(Stage):
    def process(self, msg):
        if isinstance(msg, FrameMessage) and msg.index == 5:
            raise RuntimeError("kaboom at frame 5")
        return [msg]


@dataclass
class StuckParams:
    marker: str = ""  # folder where the stage leaves its pid


class StuckStage(Stage):
    """Blocks in a call that never returns (a hung driver, a deadlock): ignores ``stop``."""

    Params = StuckParams

    def process(self, msg):
        if isinstance(msg, FrameMessage) and msg.index == 3:
            (Path(self.params.marker) / str(os.getpid())).touch()
            while True:
                time.sleep(1)
        return [msg]


def make_config(source, endpoint, mode="threads", middle=(), **kw):
    stages = [
        {
            "name": "decode",
            "type": "decode",
            "params": {"source": str(source), **kw.pop("decode", {})},
        },
        *middle,
        {
            "name": "publish",
            "type": "publish",
            "params": {
                "endpoint": endpoint,
                "wait_for_subscribers": kw.pop("subs", 1),
                "sndhwm": 1000,
            },
        },
    ]
    return build(PipelineConfig, {"mode": mode, "stages": stages, **kw})


class Subscriber:
    def __init__(self, endpoint, topic=b"nbf/cam0/"):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, 100000)
        self.sock.setsockopt(zmq.RECONNECT_IVL, 20)
        self.sock.setsockopt(zmq.SUBSCRIBE, topic)
        self.sock.connect(endpoint)
        self.msgs = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            if self.sock.poll(20):
                topic, payload = self.sock.recv_multipart()
                self.msgs.append((topic.decode(), msgpack.unpackb(payload)))

    def close(self):
        time.sleep(0.2)
        self._stop.set()
        self.thread.join()
        self.sock.close(0)
        self.ctx.term()

    def poses(self):
        return [m for t, m in self.msgs if t.endswith("/pose")]


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_every_frame_published_once_in_order(tmp_path, mode):
    clip = write_clip(tmp_path / "c.mp4", n=20)
    ep = f"tcp://127.0.0.1:{free_port()}"
    middle = [
        {"name": "detect", "type": "detect", "params": {"detector": "hog"}},
        {"name": "tag", "type": "tests.pipeline.test_graph:FrameTagStage"},
    ]
    sub = Subscriber(ep)
    result = Graph(make_config(clip, ep, mode, middle)).run(timeout_s=60)
    sub.close()
    assert result.ok, result.errors
    poses = sub.poses()
    assert [p["frame_index"] for p in poses] == list(range(20))
    assert [p["persons"][0]["track_id"] for p in poses] == list(range(20))  # the pixels match
    np.testing.assert_allclose([p["timestamp"] for p in poses], np.arange(20) / 25, atol=1e-6)
    s = result.summary
    assert (s["frames"], s["published"], s["dropped"], s["policy"]) == (20, 20, 0, "block")
    assert set(s["stages"]) == {"decode", "detect", "tag", "publish"}
    assert s["stages"]["detect"]["frames_in"] == 20
    assert s["stages"]["detect"]["latency_ms_p95"] >= s["stages"]["detect"]["latency_ms_p50"] > 0


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_stage_exception_stops_graph_naming_stage(tmp_path, mode):
    clip = write_clip(tmp_path / "c.mp4", n=200)
    ep = f"tcp://127.0.0.1:{free_port()}"
    middle = [{"name": "boom", "type": "tests.pipeline.test_graph:FailStage"}]
    t0 = time.monotonic()
    result = Graph(make_config(clip, ep, mode, middle, subs=0)).run(timeout_s=60)
    assert not result.ok
    assert result.errors[0].stage == "boom" and "kaboom at frame 5" in result.errors[0].error
    assert "RuntimeError" in result.errors[0].traceback or mode == "processes"
    assert time.monotonic() - t0 < 30


def test_a_stuck_stage_process_is_killed_and_named(tmp_path, monkeypatch):
    """Stage processes ignore SIGTERM (a group signal must not cut a frame in half), so a stage
    stuck past the stop grace is killed; before, terminate() left it running."""
    from pipeline import graph

    monkeypatch.setattr(graph, "STOP_GRACE_S", 1.0)
    clip = write_clip(tmp_path / "c.mp4", n=50)
    ep = f"tcp://127.0.0.1:{free_port()}"
    marker = tmp_path / "pids"
    marker.mkdir()
    middle = [{"name": "stuck", "type": "tests.pipeline.test_graph:StuckStage",
               "params": {"marker": str(marker)}}]  # fmt: skip
    result = Graph(make_config(clip, ep, "processes", middle, subs=0)).run(timeout_s=8)
    assert not result.ok
    assert {e.stage for e in result.errors} >= {"graph", "stuck"}, result.errors
    assert any(e.stage == "stuck" and "did not stop" in e.error for e in result.errors)
    (pid,) = [int(p.name) for p in marker.iterdir()]
    assert not Path(f"/proc/{pid}").exists(), f"stuck stage process {pid} still running"


def test_malformed_messages_are_dropped_and_counted(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", n=20)
    ep = f"tcp://127.0.0.1:{free_port()}"
    middle = [{"name": "tag", "type": "tests.pipeline.test_graph:FrameTagStage"}]
    cfg = make_config(
        clip, ep, "threads", middle, transport={"protocol": "tcp"}, decode={"realtime": True}
    )
    graph = Graph(cfg)
    address = graph.plan.stages[1].input.address
    sub = Subscriber(ep)

    def inject():
        ctx = zmq.Context()
        s = ctx.socket(zmq.PUSH)
        s.connect(address)
        time.sleep(0.3)
        s.send_multipart([b"D", b"\x93not a message"])
        s.send(b"single frame")
        s.send_multipart([b"D", msgpack.packb({"nbf": 1, "type": "frame", "body": {"x": 1}})])
        s.close(linger=1000)
        ctx.term()

    t = threading.Thread(target=inject)
    t.start()
    result = graph.run(timeout_s=30)
    t.join()
    sub.close()
    assert result.ok, result.errors
    assert result.summary["stages"]["tag"]["malformed"] == 3
    assert [p["frame_index"] for p in sub.poses()] == list(range(20))


def test_metrics_published_on_metrics_topic(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", n=15)
    ep = f"tcp://127.0.0.1:{free_port()}"
    cfg = make_config(clip, ep, "threads", metrics={"interval_s": 0.1}, decode={"realtime": True})
    sub = Subscriber(ep)
    result = Graph(cfg).run(timeout_s=30)
    sub.close()
    assert result.ok
    metrics = [m for t, m in sub.msgs if t == "nbf/cam0/metrics"]
    assert metrics, "no metrics message"
    assert metrics[-1]["schema"] == "nbf.metrics" and "decode" in metrics[-1]["stages"]


class SetupFailStage(Stage):
    def setup(self):
        raise OSError("model file missing")


def test_setup_failure_is_reported_with_stage_name(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", n=50)
    ep = f"tcp://127.0.0.1:{free_port()}"
    middle = [{"name": "loader", "type": "tests.pipeline.test_graph:SetupFailStage"}]
    result = Graph(make_config(clip, ep, "threads", middle, subs=0)).run(timeout_s=30)
    assert not result.ok
    assert [(e.stage, e.error) for e in result.errors] == [
        ("loader", "OSError: model file missing")
    ]


class EchoFitStage(Stage):
    """Test stand-in for the fit's feedback path: predicts each track's box to stay put."""

    side_outputs = ("tracks",)

    def process(self, msg):
        if isinstance(msg, FrameMessage):
            preds = [TrackPrediction(p.track_id, p.box, 0.9, msg.index) for p in msg.persons]
            self.ctx.emit_side("tracks", TrackFeedback(msg.stream_id, msg.index, preds))
        return [msg]


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_track_feedback_side_channel_skips_detection(tmp_path, mode):
    from tests.engines.detect.test_onnx import _model

    model = _model(tmp_path / "d.onnx", [[8, 4, 24, 36, 0.9, 0]])
    clip = write_clip(tmp_path / "c.mp4", n=40)
    ep = f"tcp://127.0.0.1:{free_port()}"
    detect = {"detector": "onnx", "onnx_path": str(model), "every_n": 100, "max_prediction_age": 50}
    middle = [
        {"name": "detect", "type": "detect", "params": detect, "queue_size": 1},
        {"name": "fit", "type": "tests.pipeline.test_graph:EchoFitStage", "queue_size": 1},
    ]
    sub = Subscriber(ep)
    cfg = make_config(clip, ep, mode, middle, decode={"realtime": True})
    result = Graph(cfg).run(timeout_s=60)
    sub.close()
    assert result.ok, result.errors
    poses = sub.poses()
    assert [p["frame_index"] for p in poses] == list(range(40))
    detected = [p["detected"] for p in poses]
    assert detected[0] and sum(detected) < 10  # after the first fits, boxes come from the fit
    fit_boxes = [p for p in poses if p["persons"] and p["persons"][0]["box_source"] == "fit"]
    assert len(fit_boxes) > 30 and all(not p["detected"] for p in fit_boxes)


def test_mixed_threads_and_a_process_stage(tmp_path):
    """``run_as: process`` puts one stage in its own process inside a threads-mode graph."""
    clip = write_clip(tmp_path / "c.mp4", n=12)
    ep = f"tcp://127.0.0.1:{free_port()}"
    middle = [{"name": "tag", "type": "tests.pipeline.test_graph:FrameTagStage",
               "run_as": "process"}]  # fmt: skip
    cfg = make_config(clip, ep, "threads", middle)
    plan = Graph(cfg).plan
    assert [p.run_as for p in plan.stages] == ["thread", "process", "thread"]
    assert all(p.input.address.startswith("ipc://") for p in plan.stages[1:])
    sub = Subscriber(ep)
    result = Graph(cfg).run(timeout_s=60)
    sub.close()
    assert result.ok, result.errors
    poses = sub.poses()
    assert [p["frame_index"] for p in poses] == list(range(12))
    assert [p["persons"][0]["track_id"] for p in poses] == list(range(12))
    with pytest.raises(Exception, match="inproc"):
        make_config(clip, ep, "threads", middle, transport={"protocol": "inproc"})
        Graph(make_config(clip, ep, "threads", middle, transport={"protocol": "inproc"}))
    with pytest.raises(Exception, match="run_as"):
        make_config(clip, ep, "threads", [{**middle[0], "run_as": "fiber"}])
