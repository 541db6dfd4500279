import msgpack
import numpy as np
import pytest

from pipeline.messages import (
    EndOfStream,
    Event,
    FrameMessage,
    MessageDecodeError,
    MetricsMessage,
    Person,
    TrackFeedback,
    TrackPrediction,
    decode,
    encode,
)


def _frame() -> FrameMessage:
    rng = np.random.default_rng(0)
    p = Person(
        3,
        "occluded",
        np.array([1, 2, 30, 40], np.float32),
        0.7,
        "carried",
        global_orient=np.array([np.pi, 0, 0], np.float32),
        body_pose=rng.normal(size=69).astype(np.float32),
        joints2d=rng.normal(size=(24, 2)).astype(np.float32),
        likelihood=-3.5,
        extras={"feat": rng.normal(size=(2, 4, 4)).astype(np.float16)},
    )
    return FrameMessage(
        "cam0",
        7,
        0.28,
        rng.integers(0, 255, (6, 8, 3), dtype=np.uint8),
        25.0,
        persons=[p, Person(4, "tracking", np.zeros(4, np.float32), 0.9)],
        tracks=[TrackPrediction(3, np.ones(4, np.float32), 0.8, 6)],
        detected=True,
    )


def test_frame_roundtrip_exact():
    f = _frame()
    g = decode(encode(f))
    assert g.index == 7 and g.timestamp == 0.28 and g.detected and g.stream_id == "cam0"
    np.testing.assert_array_equal(g.image, f.image)
    assert g.image.dtype == np.uint8 and g.image.shape == (6, 8, 3)
    a, b = g.persons
    np.testing.assert_array_equal(a.body_pose, f.persons[0].body_pose)
    np.testing.assert_array_equal(a.extras["feat"], f.persons[0].extras["feat"])
    assert a.extras["feat"].dtype == np.float16 and a.likelihood == -3.5 and a.state == "occluded"
    assert b.body_pose is None and b.betas is None and b.likelihood is None
    assert g.tracks[0].track_id == 3 and g.tracks[0].frame_index == 6


@pytest.mark.parametrize(
    "msg",
    [
        TrackFeedback("s", 3, [TrackPrediction(1, np.zeros(4, np.float32), 0.5, 3)]),
        Event("s", "gap", "decode", "reconnected", 4, {"gap_s": 1.5}),
        EndOfStream("s", "error", 12),
        MetricsMessage("s", 2.0, {"decode": {"frames_out": 3}}),
    ],
)
def test_other_messages_roundtrip(msg):
    back = decode(encode(msg))
    assert type(back) is type(msg) and encode(back) == encode(msg)


def _env(body, type_="frame", v=1):
    return msgpack.packb({"nbf": v, "type": type_, "body": body}, use_bin_type=True)


def _arr(dtype="|u1", shape=(2,), data=b"ab"):
    return {"__nd__": 1, "dtype": dtype, "shape": list(shape), "data": data}


@pytest.mark.parametrize(
    "data,match",
    [
        (b"\xc1\xc1garbage", "not msgpack"),
        (msgpack.packb([1, 2, 3]), "envelope"),
        (_env({}, v=2), "wire version"),
        (_env({}, type_="pickle"), "unknown message type"),
        (
            _env({"stream_id": "s", "index": 1, "timestamp": 0.0, "image": None, "evil": 1}),
            "unknown field",
        ),
        (_env({"stream_id": "s", "index": "1", "timestamp": 0.0, "image": None}), "integer"),
        (_env({"stream_id": "s", "index": 1, "timestamp": 0.0}), "missing field"),
        (
            _env({"stream_id": "s", "index": 1, "timestamp": 0.0, "image": _arr("|O")}),
            "not allowed",
        ),
        (
            _env({"stream_id": "s", "index": 1, "timestamp": 0.0, "image": _arr(shape=(3,))}),
            "do not fill",
        ),
        (
            _env(
                {
                    "stream_id": "s",
                    "index": 1,
                    "timestamp": 0.0,
                    "image": None,
                    "persons": [
                        {
                            "track_id": 1,
                            "state": "flying",
                            "box": _arr("<f4", (1,), b"abcd"),
                            "score": 1.0,
                        }
                    ],
                }
            ),
            "state",
        ),
    ],
)
def test_malformed_input_raises_specific_error(data, match):
    with pytest.raises(MessageDecodeError, match=match):
        decode(data)


def test_encode_rejects_object_arrays():
    f = FrameMessage("s", 0, 0.0, np.array([object()], dtype=object))
    with pytest.raises(TypeError, match="cannot be sent"):
        encode(f)
