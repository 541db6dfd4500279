import socket
import threading

import msgpack
import numpy as np
import pytest
import torch
import zmq
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage
from pythonosc.parsing import osc_types

from engines.body import BodyModel
from engines.rotations import quaternion_to_matrix
from engines.vmc import VMCSender, bone_table, main

BONES = [b.name for b in bone_table(True)]
S45 = np.sin(np.pi / 4)


@pytest.fixture(scope="module")
def body():
    return BodyModel.default()


@pytest.fixture()
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(5)
    yield s
    s.close()


def person(tid=1, go=(np.pi, 0, 0), bp=None, state="tracking", transl=(0.1, 0.2, 3.0)):
    return {
        "track_id": tid,
        "state": state,
        "global_orient": list(go),
        "body_pose": [0.0] * 69 if bp is None else list(bp),
        "betas": [0.0] * 10,
        "transl": list(transl),
    }


def payload(*persons, t=0.5):
    return {"schema": "nbf.pose", "timestamp": t, "persons": list(persons)}


def decode(dgram):
    """address -> list of (type tags, params) from one received datagram."""
    assert OscBundle.dgram_is_bundle(dgram)
    out = {}
    for m in OscBundle(dgram):
        assert isinstance(m, OscMessage)
        addr, i = osc_types.get_string(m.dgram, 0)
        tags, _ = osc_types.get_string(m.dgram, i)
        out.setdefault(addr, []).append((tags.lstrip(","), m.params))
    return out


def send_recv(sender, pl, udp):
    sender.send_frame(pl)
    dgram, _ = udp.recvfrom(65536)
    return decode(dgram)


def bones_of(msgs):
    return {p[0]: (np.array(p[1:4]), np.array(p[4:8])) for _, p in msgs["/VMC/Ext/Bone/Pos"]}


def test_wire_format_and_rest_pose(body, udp):
    s = VMCSender(*udp.getsockname(), body=body)
    msgs = send_recv(s, payload(person()), udp)
    assert msgs["/VMC/Ext/Root/Pos"] == [("s" + "f" * 7, ["root", 0, 0, 0, 0, 0, 0, 1.0])]
    names = [p[0] for _, p in msgs["/VMC/Ext/Bone/Pos"]]
    assert sorted(names) == sorted(BONES) and len(names) == len(set(names)) == 22
    assert all(t == "s" + "f" * 7 for t, _ in msgs["/VMC/Ext/Bone/Pos"])
    assert msgs["/VMC/Ext/OK"] == [("iiii", [1, 3, 0, 1])]
    assert msgs["/VMC/Ext/T"] == [("f", [0.5])]
    bones = bones_of(msgs)
    for n, (_, q) in bones.items():  # rest T-pose -> identity local rotations
        assert abs(abs(q[3]) - 1) < 1e-6, n
    # Unity: subject's left is -x; anchored hips at the standing pelvis height
    assert bones["LeftUpperLeg"][0][0] < -0.05 and bones["RightUpperLeg"][0][0] > 0.05
    assert bones["LeftUpperArm"][0][0] < -0.05
    hips = bones["Hips"][0]
    assert abs(hips[0]) < 1e-6 and abs(hips[2]) < 1e-6 and 0.7 < hips[1] < 1.2
    s.close()


def test_elbow_mirrored(body, udp):
    bp = np.zeros(69)
    bp[(18 - 1) * 3 + 1] = np.pi / 2  # left elbow 90 deg about SMPL's y
    s = VMCSender(*udp.getsockname(), body=body)
    bones = bones_of(send_recv(s, payload(person(bp=bp)), udp))
    q = bones["LeftLowerArm"][1]
    np.testing.assert_allclose(q * np.sign(q[3]), [0, -S45, 0, S45], atol=1e-6)
    # forearm at rest points to -x in Unity (subject's left); bent backwards -> -z
    qw = torch.tensor([q[3], *q[:3]], dtype=torch.float64)
    d = quaternion_to_matrix(qw).numpy() @ np.array([-1.0, 0, 0])
    np.testing.assert_allclose(d, [0, 0, -1], atol=1e-6)
    for n, (_, q) in bones.items():
        if n != "LeftLowerArm":
            assert abs(abs(q[3]) - 1) < 1e-6, n
    s.close()


def test_hips_facing(body, udp):
    s = VMCSender(*udp.getsockname(), body=body)
    # facing the camera -> identity: Hips faces Unity's +z (towards a receiver camera in front)
    q = bones_of(send_recv(s, payload(person()), udp))["Hips"][1]
    assert abs(abs(q[3]) - 1) < 1e-6
    # turned 90 deg to its own left (about the body's y): faces its left = Unity -x
    R = torch.tensor([[1.0, 0, 0], [0, -1, 0], [0, 0, -1]]) @ torch.tensor(
        [[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]]
    )
    from engines.rotations import matrix_to_axis_angle

    go = matrix_to_axis_angle(R.double()).numpy()
    q = bones_of(send_recv(s, payload(person(go=go)), udp))["Hips"][1]
    fwd = quaternion_to_matrix(torch.tensor([q[3], *q[:3]]).double()).numpy() @ [0, 0, 1.0]
    np.testing.assert_allclose(fwd, [-1, 0, 0], atol=1e-6)
    s.close()


def test_chain_matches_body_model(body, udp):
    """Chaining the sent local transforms along the Unity hierarchy reproduces the body model's
    joints, converted to the receiver's frame (camera-origin mode)."""
    rng = np.random.default_rng(3)
    go = np.array([np.pi, 0, 0]) + rng.normal(0, 0.4, 3)
    bp, tr = rng.normal(0, 0.3, 69), [0.2, -0.1, 2.5]
    s = VMCSender(*udp.getsockname(), body=body, anchor=False, upper_chest=False)
    bones = bones_of(send_recv(s, payload(person(go=go, bp=bp, transl=tr)), udp))
    assert "UpperChest" not in bones
    table = {b.name: b for b in bone_table(False)}
    G, P = {}, {}
    for n, b in table.items():
        p, q = bones[n]
        R = quaternion_to_matrix(torch.tensor([q[3], *q[:3]]).double()).numpy()
        if b.parent is None:
            G[n], P[n] = R, p
        else:
            G[n], P[n] = G[b.parent] @ R, P[b.parent] + G[b.parent] @ p
    f = lambda a: torch.tensor(np.asarray(a, np.float32))[None]  # noqa: E731
    J = body(f(go), f(bp), torch.zeros(1, 10), f(tr)).joints[0].double().numpy()
    J = J * [1, -1, -1] * [-1, 1, 1]  # camera -> y-up world -> Unity (mirror x)
    for n, b in table.items():
        np.testing.assert_allclose(P[n], J[b.pos], atol=2e-5, err_msg=n)
    s.close()


def test_selection_and_no_person(body, udp):
    s = VMCSender(*udp.getsockname(), body=body, track=7)
    bp = np.zeros(69)
    bp[(18 - 1) * 3 + 1] = np.pi / 2
    pl = payload(person(tid=3), person(tid=7, bp=bp, state="occluded"))
    msgs = send_recv(s, pl, udp)
    assert msgs["/VMC/Ext/OK"] == [("iiii", [1, 3, 0, 0])]  # occluded: not tracking
    assert abs(bones_of(msgs)["LeftLowerArm"][1][3]) < 0.8
    msgs = send_recv(s, payload(person(tid=3)), udp)  # track 7 absent: no bones
    assert "/VMC/Ext/Bone/Pos" not in msgs and msgs["/VMC/Ext/OK"] == [("iiii", [0, 3, 0, 0])]
    a = VMCSender(*udp.getsockname(), body=body)  # no track: lock onto the lowest tracking id
    assert a.select([person(tid=9), person(tid=4)])["track_id"] == 4
    a.current = 9
    assert a.select([person(tid=9), person(tid=4)])["track_id"] == 9
    with pytest.raises(ValueError, match="host:port"):
        VMCSender.from_target("nope", body=body)
    s.close()
    a.close()


def test_bridge_zmq_to_udp(body, udp, monkeypatch):
    monkeypatch.setattr(BodyModel, "default", classmethod(lambda cls, num_betas=10: body))
    ctx = zmq.Context()
    pub = ctx.socket(zmq.XPUB)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    host, uport = udp.getsockname()
    rc = []
    th = threading.Thread(
        target=lambda: rc.append(
            main(
                [
                    "--connect",
                    f"tcp://127.0.0.1:{port}",
                    "--target",
                    f"{host}:{uport}",
                    "--count",
                    "2",
                    "--timeout",
                    "10",
                ]
            )
        )
    )
    th.start()
    assert pub.poll(10000)  # subscription notice
    pub.recv()
    for t in (0.0, 0.04):
        pub.send_multipart([b"nbf/cam0/pose", msgpack.packb(payload(person(), t=t))])
    got = [decode(udp.recvfrom(65536)[0]) for _ in range(2)]
    th.join(10)
    assert rc == [0]
    assert [m["/VMC/Ext/T"][0][1][0] for m in got] == pytest.approx([0.0, 0.04])
    assert all(len(m["/VMC/Ext/Bone/Pos"]) == 22 for m in got)
    pub.close(0)
    ctx.term()
