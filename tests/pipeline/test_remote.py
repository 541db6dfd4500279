"""Stages on "other hosts": a stage run by ``python -m pipeline.remote`` in its own process,
talking to the supervisor over tcp on 127.0.0.1 (the same path as a real second machine)."""

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, PipelineConfig, build, load_config
from pipeline.graph import Graph
from tests.pipeline.media import free_port, write_clip
from tests.pipeline.test_graph import Subscriber

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path, clip, endpoint, middle_type, timeout_s=60.0, control_timeout_s=10.0):
    base = free_port()
    data = {
        "mode": "threads",
        "transport": {
            "protocol": "tcp",
            "tcp_host": "127.0.0.1",
            "tcp_base_port": base,
            "control_port": base + 20,
            "remote_timeout_s": timeout_s,
            "control_timeout_s": control_timeout_s,
        },
        "stages": [
            {"name": "decode", "type": "decode", "params": {"source": str(clip)}},
            {"name": "tag", "type": middle_type, "host": "127.0.0.1"},
            {
                "name": "publish",
                "type": "publish",
                "params": {"endpoint": endpoint, "wait_for_subscribers": 1, "sndhwm": 1000},
            },
        ],
    }
    path = tmp_path / "remote.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _launch(path, stage="tag"):
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.remote", "--config", str(path), "--stage", stage],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip


def test_remote_stage_every_frame_once_in_order(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", n=15)
    ep = f"tcp://127.0.0.1:{free_port()}"
    path = _config(tmp_path, clip, ep, "tests.pipeline.test_graph:FrameTagStage")
    proc = _launch(path)
    sub = Subscriber(ep)
    try:
        result = Graph(load_config(path)).run(timeout_s=90)
    finally:
        sub.close()
        out, _ = proc.communicate(timeout=30)
    assert result.ok, (result.errors, out)
    assert proc.returncode == 0, out
    poses = sub.poses()
    assert [p["frame_index"] for p in poses] == list(range(15))
    assert [p["persons"][0]["track_id"] for p in poses] == list(range(15))  # tagged remotely
    tag = result.summary["stages"]["tag"]
    assert tag["frames_in"] == 15 and tag["frames_out"] == 15


def test_remote_stage_failure_stops_the_graph(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", n=60)
    ep = f"tcp://127.0.0.1:{free_port()}"
    path = _config(tmp_path, clip, ep, "tests.pipeline.test_graph:FailStage")
    data = yaml.safe_load(path.read_text())
    data["stages"][2]["params"]["wait_for_subscribers"] = 0
    path.write_text(yaml.safe_dump(data))
    proc = _launch(path)
    try:
        result = Graph(load_config(path)).run(timeout_s=90)
    finally:
        out, _ = proc.communicate(timeout=30)
    assert not result.ok
    assert result.errors[0].stage == "tag" and "kaboom at frame 5" in result.errors[0].error
    assert proc.returncode == 1, out


def test_remote_stage_that_never_starts_fails_the_run(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", n=5)
    path = _config(tmp_path, clip, f"tcp://127.0.0.1:{free_port()}",
                   "tests.pipeline.test_graph:FrameTagStage", timeout_s=1.5)  # fmt: skip
    data = yaml.safe_load(path.read_text())
    data["stages"][2]["params"]["wait_for_subscribers"] = 0
    path.write_text(yaml.safe_dump(data))
    t0 = time.monotonic()
    result = Graph(load_config(path)).run(timeout_s=60)
    assert not result.ok and time.monotonic() - t0 < 30
    assert "did not connect" in result.errors[0].error and "tag" in result.errors[0].error


def _realtime_config(tmp_path, **kw):
    """A 30 s clip decoded at its native rate through a remote FrameTagStage: (config, endpoint)."""
    clip = write_clip(tmp_path / "c.mp4", n=750, fps=25)
    ep = f"tcp://127.0.0.1:{free_port()}"
    path = _config(tmp_path, clip, ep, "tests.pipeline.test_graph:FrameTagStage", **kw)
    data = yaml.safe_load(path.read_text())
    data["stages"][0]["params"]["realtime"] = True
    path.write_text(yaml.safe_dump(data))
    return path, ep


def _wait_for_poses(sub, n=5, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    while len(sub.poses()) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    return len(sub.poses()) >= n


def test_remote_stage_stops_when_the_supervisor_is_killed(tmp_path):
    """A remote stage whose supervisor dies mid-stream stops (exit 1) instead of waiting on."""
    path, ep = _realtime_config(tmp_path, control_timeout_s=2.0)
    remote = _launch(path)
    supervisor = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pipeline.config import load_config; "
         "from pipeline.graph import Graph; Graph(load_config(sys.argv[1])).run()", str(path)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    sub = Subscriber(ep)
    try:
        assert _wait_for_poses(sub), "no frames flowed through the remote stage"
        supervisor.kill()
        supervisor.wait(timeout=10)
        t0 = time.monotonic()
        out, _ = remote.communicate(timeout=30)
        waited = time.monotonic() - t0
    finally:
        sub.close()
        supervisor.kill()
        remote.kill()
    assert remote.returncode == 1, out
    assert "no word from the supervisor" in out and waited < 10, (waited, out)


def test_killed_remote_stage_fails_the_run_naming_it(tmp_path):
    """The supervisor gives up on a remote stage that went silent mid-stream, instead of
    waiting on it forever, and stops the graph with an error naming it."""
    path, ep = _realtime_config(tmp_path, control_timeout_s=2.0)
    remote = _launch(path)
    sub = Subscriber(ep)
    killed_at = []

    def kill_after_five_frames():
        _wait_for_poses(sub)
        remote.kill()
        killed_at.append(time.monotonic())

    killer = threading.Thread(target=kill_after_five_frames, daemon=True)
    killer.start()
    try:
        result = Graph(load_config(path)).run(timeout_s=90)
        ended = time.monotonic()
    finally:
        sub.close()
        remote.kill()
        remote.communicate(timeout=30)
    assert killed_at, "the remote stage was not killed"
    assert not result.ok
    assert result.errors[0].stage == "tag" and "went silent" in result.errors[0].error
    assert ended - killed_at[0] < 15, ended - killed_at[0]  # 2 s of silence + stopping


def test_sigterm_on_a_remote_stage_drains_the_graph(tmp_path):
    """SIGTERM (or Ctrl-C) on a remote stage's host drains the whole graph: the source stops,
    every frame read is published, both sides exit cleanly and the result says interrupted."""
    path, ep = _realtime_config(tmp_path)
    remote = _launch(path)
    sub = Subscriber(ep)

    def terminate_after_five_frames():
        _wait_for_poses(sub)
        remote.send_signal(signal.SIGTERM)

    threading.Thread(target=terminate_after_five_frames, daemon=True).start()
    try:
        t0 = time.monotonic()
        result = Graph(load_config(path)).run(timeout_s=90)
        took = time.monotonic() - t0
    finally:
        sub.close()
        out, _ = remote.communicate(timeout=30)
    assert result.ok and result.interrupted, (result.errors, out)
    assert remote.returncode == 0, out
    assert "asking the supervisor to drain" in out
    frames = result.summary["stages"]["decode"]["frames_out"]
    assert 5 <= frames < 750 and took < 25, (frames, took)
    assert [p["frame_index"] for p in sub.poses()] == list(range(frames))  # nothing lost


def test_remote_config_validation(tmp_path):
    stages = [{"name": "decode", "type": "decode", "params": {"source": "x.mp4"}},
              {"name": "publish", "type": "publish", "host": "10.0.0.2"}]  # fmt: skip
    with pytest.raises(ConfigError, match="protocol"):
        build(PipelineConfig, {"stages": stages})
    with pytest.raises(ConfigError, match="control_port"):
        build(PipelineConfig, {"transport": {"protocol": "tcp"}, "stages": stages})
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"stages": stages[:1]}))
    r = subprocess.run([sys.executable, "-m", "pipeline.remote", "--config", str(path),
                        "--stage", "fit"], cwd=ROOT, capture_output=True, text=True)  # fmt: skip
    assert r.returncode != 0 and "no stage 'fit'" in r.stderr
