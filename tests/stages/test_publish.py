import logging
import os
import time

import msgpack
import numpy as np
import pytest
import zmq

from pipeline.config import build
from pipeline.messages import Event, FrameMessage, MetricsMessage, Person
from stages.base import StageContext
from stages.publish import PublishError, PublishParams, PublishStage
from tests.pipeline.media import free_port


def make(**params):
    p = build(PublishParams, params)
    ctx = StageContext(
        "publish", "cam7", lambda c, m: None, lambda: False, lambda e: None, logging.getLogger("t")
    )
    s = PublishStage(p, ctx)
    s.setup()
    return s


def person(tid, rng):
    return Person(
        tid,
        "tracking",
        np.array([1, 2, 30, 60], np.float32),
        0.9,
        global_orient=np.array([np.pi, 0, 0], np.float32),
        body_pose=rng.normal(0, 0.2, 69).astype(np.float32),
        betas=np.zeros(10, np.float32),
        transl=np.array([0, 0, 3], np.float32),
        joints3d=rng.normal(size=(24, 3)).astype(np.float32),
        joints2d=rng.uniform(0, 60, (24, 2)).astype(np.float32),
        likelihood=-1.5,
    )


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_schema_and_topics():
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"nbf/cam7/")
    sub.connect(ep)
    s = make(endpoint=ep, wait_for_subscribers=1, wait_timeout_s=5)
    rng = np.random.default_rng(0)
    msg = FrameMessage(
        "cam7",
        3,
        0.12,
        np.zeros((48, 64, 3), np.uint8),
        persons=[person(5, rng), Person(6, "occluded", np.zeros(4, np.float32), 0.4)],
    )
    assert s.process(msg) == [msg]
    s.process(Event("cam7", "gap", "decode", "reconnected after 1.0 s", 2, {"gap_s": 1.0}))
    s.on_side("metrics", MetricsMessage("cam7", 1.0, {"decode": {"frames_out": 4}}))
    got = {}
    for _ in range(3):
        assert sub.poll(2000)
        topic, payload = sub.recv_multipart()
        got[topic.decode()] = msgpack.unpackb(payload)
    pose = got["nbf/cam7/pose"]
    assert (pose["schema"], pose["version"], pose["stream_id"]) == ("nbf.pose", 1, "cam7")
    assert pose["frame_index"] == 3 and pose["image_size"] == [64, 48]
    a, b = pose["persons"]
    assert a["track_id"] == 5 and len(a["body_pose"]) == 69 and len(a["joints3d"]) == 24
    np.testing.assert_allclose(a["global_orient"], [np.pi, 0, 0], atol=1e-6)
    assert b["state"] == "occluded" and b["body_pose"] is None and b["likelihood"] is None
    assert got["nbf/cam7/event"]["kind"] == "gap"
    assert got["nbf/cam7/metrics"]["stages"]["decode"]["frames_out"] == 4
    s.close()
    sub.close(0)
    ctx.term()


def test_subscriber_that_never_reads_does_not_stall_or_grow_memory():
    ep = f"tcp://127.0.0.1:{free_port()}"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)  # subscribes, never reads
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 10)
    sub.connect(ep)
    s = make(endpoint=ep, sndhwm=10, wait_for_subscribers=1, wait_timeout_s=5)
    rng = np.random.default_rng(0)
    persons = [person(i, rng) for i in range(8)]  # ~10 kB per message
    msg = FrameMessage("cam7", 0, 0.0, np.zeros((4, 4, 3), np.uint8), persons=persons)
    n = 3000  # ~30 MB if it were all kept
    for _ in range(200):
        s.process(msg)
    before = rss_mb()
    t0 = time.monotonic()
    for i in range(n):
        msg.index = i
        s.process(msg)
    elapsed = time.monotonic() - t0
    grown = rss_mb() - before
    s.close()
    sub.close(0)
    ctx.term()
    assert elapsed < 20, f"publisher stalled: {elapsed:.1f} s for {n} messages"
    assert grown < 15, f"memory grew by {grown:.1f} MB"


def test_port_in_use_is_a_clear_error():
    ep = f"tcp://127.0.0.1:{free_port()}"
    first = make(endpoint=ep)
    with pytest.raises(PublishError, match="address already in use"):
        PublishStage.preflight(build(PublishParams, {"endpoint": ep}))
    first.close()
    PublishStage.preflight(build(PublishParams, {"endpoint": ep}))  # free again


def test_wait_for_subscribers_times_out():
    with pytest.raises(PublishError, match="0 of 1 subscribers"):
        make(endpoint=f"tcp://127.0.0.1:{free_port()}", wait_for_subscribers=1, wait_timeout_s=0.2)


def test_file_sinks(tmp_path):
    import av

    s = make(endpoint=f"tcp://127.0.0.1:{free_port()}", output_dir=str(tmp_path))
    rng = np.random.default_rng(1)
    for i in range(6):
        persons = [person(1, rng)] + (
            [Person(2, "lost", np.zeros(4, np.float32), 0.1)] if i == 2 else []
        )
        s.process(
            FrameMessage(
                "cam7", i, i / 25, np.full((47, 63, 3), 90, np.uint8), 25.0, persons=persons
            )
        )
    s.flush()
    s.close()
    assert len((tmp_path / "poses.jsonl").read_text().splitlines()) == 6
    with np.load(tmp_path / "poses.npz") as z:
        assert z["frame_index"].tolist() == list(range(6))
        assert z["person_frame"].tolist() == [0, 1, 2, 2, 3, 4, 5]
        assert z["state_names"][z["state"][3]] == "lost"
        assert np.isnan(z["body_pose"][3]).all() and np.isfinite(z["body_pose"][0]).all()
        assert z["joints2d"].shape == (7, 24, 2)
    with av.open(str(tmp_path / "overlay.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (48, 64, 3)  # padded to even size
    # the box outline is drawn in the state colour (green for tracking)
    edge = frames[0][4:44, 1]
    assert np.median(edge[:, 1]) > 150 and np.median(edge[:, 0]) < 120


def test_vmc_target_sends_one_osc_bundle_per_frame():
    import socket

    from pythonosc.osc_bundle import OscBundle

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    port = rx.getsockname()[1]
    s = make(endpoint=f"tcp://127.0.0.1:{free_port()}", vmc_target=f"127.0.0.1:{port}")
    rng = np.random.default_rng(0)
    msg = FrameMessage("cam7", 0, 0.0, np.zeros((48, 64, 3), np.uint8), persons=[person(1, rng)])
    s.process(msg)
    data, _ = rx.recvfrom(65536)
    bundle = OscBundle(data)
    addresses = [m.address for m in bundle]
    assert "/VMC/Ext/Bone/Pos" in addresses and "/VMC/Ext/OK" in addresses
    s.close()
    rx.close()
