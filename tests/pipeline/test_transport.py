import threading
import time

import pytest
import zmq

from pipeline.transport import (
    CONTROL,
    DATA,
    MALFORMED,
    QueueReceiver,
    QueueSender,
    QueueSpec,
    StoppedError,
    make_address,
)


@pytest.fixture
def zctx():
    ctx = zmq.Context()
    yield ctx
    ctx.term()


@pytest.mark.parametrize("protocol", ["inproc", "ipc", "tcp"])
def test_block_policy_delivers_everything_in_order(zctx, protocol):
    spec = QueueSpec("q", make_address(protocol, f"t{time.time_ns()}", "q"), "block", 2)
    rx = QueueReceiver(zctx, spec)
    stop = threading.Event()
    n = 200

    def produce():
        tx = QueueSender(zctx, spec, stop)
        for i in range(n):
            tx.send(str(i).encode())
        tx.send(b"end", control=True)
        # keep the socket open until the consumer is done (what the graph's ack does)
        done.wait(10)
        tx.close()

    done = threading.Event()
    t = threading.Thread(target=produce)
    t.start()
    got = []
    while True:
        m = rx.recv(1000)
        assert m is not None, "queue stalled"
        if m[0] == CONTROL:
            break
        got.append(int(m[1]))
        if len(got) % 50 == 0:
            time.sleep(0.02)  # a slow consumer: the sender must wait, not drop
    done.set()
    t.join()
    rx.close()
    assert got == list(range(n))
    assert rx.dropped == 0


def test_latest_policy_drops_stale_keeps_newest_and_control(zctx):
    spec = QueueSpec("q", make_address("inproc", f"t{time.time_ns()}", "q"), "latest", 1)
    rx = QueueReceiver(zctx, spec)
    tx = QueueSender(zctx, spec, threading.Event())
    got = []

    def consume():
        while True:
            m = rx.recv(2000)
            assert m is not None
            got.append(m)
            if m == (CONTROL, b"end"):
                return
            time.sleep(0.005)  # slower than the producer

    t = threading.Thread(target=consume)
    t.start()
    for i in range(50):
        tx.send(str(i).encode())
        if i == 25:
            tx.send(b"event", control=True)
    tx.send(b"end", control=True)
    t.join(10)
    data = [int(p) for f, p in got if f == DATA]
    assert (CONTROL, b"event") in got and got[-1] == (CONTROL, b"end")
    assert data == sorted(data) and len(set(data)) == len(data)
    assert 0 < len(data) < 50
    assert len(data) + tx.dropped + rx.dropped == 50  # every frame delivered or counted
    assert tx.dropped + rx.dropped > 0
    tx.close(0)
    rx.close()


def test_malformed_framing_is_flagged(zctx):
    spec = QueueSpec("q", make_address("inproc", f"t{time.time_ns()}", "q"), "block", 4)
    rx = QueueReceiver(zctx, spec)
    rogue = zctx.socket(zmq.PUSH)
    rogue.connect(spec.address)
    rogue.send(b"one part only")
    m = rx.recv(1000)
    assert m == (MALFORMED, b"one part only")
    rogue.close(0)
    rx.close()


def test_blocked_sender_stops_when_asked(zctx):
    spec = QueueSpec("q", make_address("inproc", f"t{time.time_ns()}", "q"), "block", 1)
    rx = QueueReceiver(zctx, spec)  # never read
    stop = threading.Event()
    tx = QueueSender(zctx, spec, stop)
    threading.Timer(0.2, stop.set).start()
    with pytest.raises(StoppedError):
        for _ in range(100):
            tx.send(b"x" * 10)
    tx.close(0)
    rx.close()


def test_spec_validation():
    with pytest.raises(ValueError, match="policy"):
        QueueSpec("q", "inproc://x", "sometimes", 1)
    with pytest.raises(ValueError, match="size"):
        QueueSpec("q", "inproc://x", "block", 0)
