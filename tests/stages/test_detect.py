import logging

import numpy as np
import pytest

from pipeline.config import ConfigError, build
from pipeline.messages import FrameMessage, TrackFeedback, TrackPrediction
from stages.base import StageContext
from stages.detect import DetectParams, DetectStage
from tests.engines.detect.test_onnx import _model


@pytest.fixture
def stage(tmp_path):
    path = _model(tmp_path / "d.onnx", [[8, 4, 24, 36, 0.9, 0]])
    p = build(
        DetectParams,
        {
            "detector": "onnx",
            "onnx_path": str(path),
            "every_n": 4,
            "max_prediction_age": 2,
            "min_track_confidence": 0.5,
        },
    )
    ctx = StageContext(
        "detect", "s", lambda c, m: None, lambda: False, lambda e: None, logging.getLogger("t")
    )
    DetectStage.preflight(p)
    s = DetectStage(p, ctx)
    s.setup()
    return s


def frame(i):
    return FrameMessage("s", i, i / 25, np.zeros((64, 64, 3), np.uint8))


def feedback(i, conf=0.9, box=(10, 10, 30, 40)):
    return TrackFeedback("s", i, [TrackPrediction(1, np.array(box, np.float32), conf, i)])


def test_without_fit_detector_runs_every_frame(stage):
    outs = [stage.process(frame(i))[0] for i in range(5)]
    assert all(o.detected for o in outs)
    assert all([p.track_id for p in o.persons] == [1] for o in outs)
    np.testing.assert_allclose(outs[0].persons[0].box, [8, 4, 24, 36])


def test_track_by_fit_skips_detection_until_every_n(stage):
    assert stage.process(frame(0))[0].detected
    detected = []
    for i in range(1, 9):
        stage.on_side("tracks", feedback(i - 1, box=(10 + i, 10, 30 + i, 40)))
        out = stage.process(frame(i))[0]
        detected.append(out.detected)
        if not out.detected:
            p = out.persons[0]
            assert p.box_source == "fit" and p.state == "tracking"
            np.testing.assert_allclose(p.box, [10 + i, 10, 30 + i, 40])
            assert out.tracks[0].track_id == 1
    assert detected == [False, False, False, True, False, False, False, True]


def test_low_confidence_or_stale_prediction_triggers_detection(stage):
    stage.process(frame(0))
    stage.on_side("tracks", feedback(0))
    assert not stage.process(frame(1))[0].detected  # followed by the fit
    stage.on_side("tracks", feedback(1, conf=0.2))
    assert stage.process(frame(2))[0].detected  # the fit lost confidence
    stage.on_side("tracks", feedback(2))
    assert not stage.process(frame(3))[0].detected
    assert not stage.process(frame(4))[0].detected  # 2 frames old: still usable
    assert stage.process(frame(5))[0].detected  # 3 frames old (max_prediction_age 2)


def test_unconfirmed_track_keeps_its_box_until_the_next_round(stage):
    assert stage.process(frame(0))[0].detected
    stage.on_side("tracks", TrackFeedback("s", 0, []))  # a fit exists, no prediction yet
    out = stage.process(frame(1))[0]
    assert not out.detected and out.persons[0].box_source == "detector"
    assert stage.process(frame(4))[0].detected  # every_n = 4


def test_prediction_is_moved_along_its_velocity(stage):
    stage.process(frame(0))
    v = np.array([2, 0, 2, 0], np.float32)
    fb = TrackFeedback("s", 0, [TrackPrediction(1, np.array([10, 10, 30, 40], np.float32),
                                                0.9, 0, v)])  # fmt: skip
    stage.on_side("tracks", fb)
    out = stage.process(frame(2))[0]  # box predicted for frame 1, one more frame of motion
    assert not out.detected
    np.testing.assert_allclose(out.persons[0].box, [12, 10, 32, 40])


def test_tracks_the_fit_rejects_are_dropped(stage):
    stage.process(frame(0))
    stage.on_side("tracks", TrackFeedback("s", 0, [], lost=[1]))
    out = stage.process(frame(1))[0]
    # the track is gone, so the detector runs again and makes a new one
    assert out.detected and [p.track_id for p in out.persons] == [2]


def test_params_validation():
    with pytest.raises(ConfigError, match="onnx_path"):
        build(DetectParams, {"detector": "onnx"})
    with pytest.raises(ConfigError, match="detector"):
        build(DetectParams, {"detector": "yolo"})
