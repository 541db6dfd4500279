import logging

import numpy as np
import pytest

from pipeline.config import ConfigError, PipelineConfig, build
from pipeline.graph import Graph
from pipeline.messages import TRACK_STATES, FrameMessage, Person, TrackFeedback, decode, encode
from stages.base import Stage, StageContext
from stages.features import FeaturesParams, FeatureStage
from stages.fit import FitParams, FitStage
from tests.stages.tiny_model import save_tiny_bundle

FAST = {"stage1_steps": 2, "stage2_steps": 2, "warm_steps": 2}
W, H = 160, 120


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_bundle(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _counts(run):
    return {k: run.fit.stats[k] for k in ("warm", "cold", "recovered")}


class Pair:
    """features -> (wire codec) -> fit, with the fit's side output recorded."""

    def __init__(self, model, **fit_kw):
        self.side = []

        def ctx(name):
            return StageContext(
                name,
                "cam0",
                lambda c, m: self.side.append((c, m)),
                lambda: False,
                lambda e: None,
                logging.getLogger(name),
            )

        self.features = FeatureStage(
            build(FeaturesParams, {"model": str(model), "backend": "torch"}), ctx("f")
        )
        self.features.setup()
        params = build(
            FitParams, {"model": str(model), "fit": dict(FAST), "torch_threads": 0, **fit_kw}
        )
        FitStage.preflight(params)
        self.fit = FitStage(params, ctx("fit"))
        self.fit.setup()

    def __call__(self, index, boxes, ids=None):
        img = np.random.default_rng(index).integers(0, 255, (H, W, 3), dtype=np.uint8)
        persons = [
            Person(ids[i] if ids else i + 1, "tracking", np.array(b, np.float32), 0.9)
            for i, b in enumerate(boxes)
        ]
        [m] = self.features.process(FrameMessage("cam0", index, index / 25, img, persons=persons))
        [m] = self.fit.process(decode(encode(m)))
        return decode(encode(m))


def test_fit_fills_smpl_fields_and_feeds_back_boxes(model):
    run = Pair(model)
    out = run(0, [[50, 10, 90, 110]], ids=[7])
    assert _counts(run) == {"warm": 0, "cold": 1, "recovered": 0}
    [q] = out.persons
    assert q.track_id == 1 and q.state in TRACK_STATES and q.extras == {}
    for name, shape in (
        ("global_orient", (3,)),
        ("body_pose", (69,)),
        ("betas", (10,)),
        ("transl", (3,)),
        ("joints3d", (24, 3)),
        ("joints2d", (24, 2)),
    ):
        v = getattr(q, name)
        assert v.shape == shape and v.dtype == np.float32 and np.isfinite(v).all()
    assert np.isfinite(q.likelihood) and q.transl[2] > 0
    # joints2d are the camera projection of joints3d, inside the frame
    K = out.extras["camera_K"]
    uv = q.joints3d @ K.T
    np.testing.assert_allclose(q.joints2d, uv[:, :2] / uv[:, 2:], atol=1e-3)
    assert (q.joints2d >= -0.5).all() and (q.joints2d[:, 0] <= W - 0.5).all()
    assert (q.joints2d[:, 1] <= H - 0.5).all()
    [(channel, fb)] = run.side
    assert channel == "tracks" and isinstance(fb, TrackFeedback) and fb.frame_index == 0
    if q.state != "lost":
        [pred] = fb.tracks
        assert pred.track_id == 7  # the detect stage's id, so it can follow the box
        assert pred.box.shape == (4,) and 0 <= pred.confidence <= 1
        assert pred.box[0] >= -0.5 and pred.box[2] <= W - 0.5 and pred.box[0] < pred.box[2]


def test_warm_path_for_known_tracks_cold_for_new_and_lost(model):
    run = Pair(model, fit={**FAST, "lost_fraction": 2.0, "lost_min_coverage": 0})  # never lost
    ids = []
    for f in range(3):
        boxes = [[40 + 4 * f, 10, 80 + 4 * f, 110]]
        if f == 2:
            boxes.append([110, 20, 150, 115])  # somebody new
        ids.append([q.track_id for q in run(f, boxes).persons])
    assert ids == [[1], [1], [1, 2]]
    assert _counts(run) == {"warm": 2, "cold": 2, "recovered": 0}
    assert run.fit.tracks.tracks[1].velocity is not None and run.fit.tracks.tracks[1].age == 3
    assert run.fit.tracks.tracks[2].velocity is None
    run.fit.tracks.tracks[1].label = "lost"  # lost tracks are re-initialised, keeping the id
    out = run(3, [[52, 10, 92, 110], [110, 20, 150, 115]])
    assert [q.track_id for q in out.persons] == [1, 2]
    assert _counts(run) == {"warm": 3, "cold": 3, "recovered": 0}


def test_warm_fit_that_is_lost_is_recovered_from_the_regressor(model):
    run = Pair(model, fit={**FAST, "lost_fraction": -1.0})  # every fit comes out lost
    assert run(0, [[50, 10, 90, 110]]).persons[0].state == "lost"
    run.fit.tracks.tracks[1].label = "tracking"
    out = run(1, [[50, 10, 90, 110]])
    assert _counts(run) == {"warm": 1, "cold": 2, "recovered": 1}
    # never confirmed (no fit ever explained it): no box to follow, the detector may drop it
    assert out.persons[0].state == "lost" and run.side[-1][1].tracks == []
    assert run.side[-1][1].lost == [1]


def test_confirmed_track_is_held_through_a_short_loss(model):
    from dataclasses import replace

    run = Pair(model, fit={**FAST, "lost_fraction": 2.0, "lost_min_coverage": 0},
               coast_frames=2, recover_every=1)  # fmt: skip
    first = run(0, [[50, 10, 90, 110]], ids=[7]).persons[0]
    assert first.state != "lost" and run.fit.tracks.tracks[1].confirmed
    run.fit.fitter.config = replace(run.fit.fitter.config, lost_fraction=-1.0)  # now all lost
    for f in (1, 2):
        [q] = run(f, [[50, 10, 90, 110]], ids=[7]).persons
        assert q.state == "occluded" and q.track_id == 1
        np.testing.assert_allclose(q.body_pose, first.body_pose)  # held at the last body
        fb = run.side[-1][1]
        assert fb.lost == [] and [t.track_id for t in fb.tracks] == [7]  # still followed
    [q] = run(3, [[50, 10, 90, 110]], ids=[7]).persons
    assert q.state == "lost" and run.fit.stats["held"] == 2
    assert run.side[-1][1].lost == []  # confirmed: reported lost, not rejected


def test_one_body_fitted_twice_is_merged(model):
    run = Pair(model, fit={**FAST, "lost_fraction": 2.0, "lost_min_coverage": 0})
    out = run(0, [[50, 10, 90, 110], [50, 10, 90, 110]], ids=[3, 4])
    assert len(out.persons) == 1 and run.fit.stats["merged"] == 1
    assert len(run.fit.tracks) == 1 and len(run.side[-1][1].lost) == 1


def test_empty_frames_pass_and_unseen_tracks_are_dropped(model):
    run = Pair(model, association={"max_misses": 2})
    run(0, [[50, 10, 90, 110]])
    for f in range(1, 4):
        out = run(f, [])
        assert out.persons == [] and run.side[-1][1].tracks == []
    assert len(run.fit.tracks) == 0
    assert [q.track_id for q in run(4, [[50, 10, 90, 110]]).persons] == [2]


def test_config_errors(tmp_path, model):
    with pytest.raises(ConfigError, match="unknown fit config"):
        build(FitParams, {"fit": {"warm_stepz": 3}})
    with pytest.raises(ConfigError, match="max_misses"):
        build(FitParams, {"association": {"max_misses": -1}})
    with pytest.raises(FileNotFoundError, match="not found"):
        FitStage.preflight(build(FitParams, {"model": str(tmp_path / "x.safetensors")}))
    with pytest.raises(FileNotFoundError, match="body_model"):
        FitStage.preflight(build(FitParams, {"model": str(model), "body_model": "/no/file.npz"}))


class BoxStage(Stage):
    """Test detector: one person; follows the fit's predicted box once one arrives."""

    side_inputs = ("tracks",)

    def setup(self):
        self.pred = None

    def on_side(self, channel, msg):
        if msg.tracks:
            self.pred = msg.tracks[0]

    def process(self, msg):
        if not isinstance(msg, FrameMessage):
            return [msg]
        h, w = msg.image.shape[:2]
        box, src = np.array([w * 0.3, h * 0.1, w * 0.7, h * 0.95], np.float32), "detector"
        if self.pred is not None:
            box, src = self.pred.box, "fit"
        msg.persons = [Person(5, "tracking", box, 1.0, box_source=src)]
        return [msg]


def test_features_and_fit_run_in_the_graph_and_close_the_loop(tmp_path, model):
    from tests.pipeline.media import free_port, write_clip
    from tests.pipeline.test_graph import Subscriber

    clip = write_clip(tmp_path / "c.mp4", n=30, width=96, height=80)
    ep = f"tcp://127.0.0.1:{free_port()}"
    stages = [
        {"name": "decode", "type": "decode", "params": {"source": str(clip), "realtime": True}},
        {"name": "detect", "type": "tests.stages.test_fit:BoxStage"},
        {
            "name": "features",
            "type": "features",
            "params": {"model": str(model), "backend": "torch"},
        },
        {
            "name": "fit",
            "type": "fit",
            "params": {
                "model": str(model),
                "torch_threads": 0,
                "fit": {**FAST, "lost_fraction": 2.0, "lost_min_coverage": 0},
            },
        },  # untrained: never lost
        {
            "name": "publish",
            "type": "publish",
            "params": {"endpoint": ep, "wait_for_subscribers": 1, "sndhwm": 1000},
        },
    ]
    sub = Subscriber(ep)
    result = Graph(build(PipelineConfig, {"stages": stages})).run(timeout_s=120)
    sub.close()
    assert result.ok, result.errors
    poses = sub.poses()
    assert [p["frame_index"] for p in poses] == list(range(30))
    persons = [p["persons"][0] for p in poses]
    assert all(len(q["body_pose"]) == 69 and len(q["joints2d"]) == 24 for q in persons)
    assert {q["track_id"] for q in persons} == {1}
    assert any(q["box_source"] == "fit" for q in persons), [
        q["state"] for q in persons
    ]  # the fit's boxes came back


def test_cold_starts_get_the_part_head_through_the_wire(model):
    """The features stage sends the part logits; the fit stage hands them to cold starts (the
    hypotheses' choice), and a frame without them still fits."""
    run = Pair(model)
    seen = []
    cold = run.fit.fitter.cold_start

    def spy(init, feats, camera, part_logits=None):
        seen.append(None if part_logits is None else tuple(part_logits.shape))
        return cold(init, feats, camera, part_logits)

    run.fit.fitter.cold_start = spy
    run(0, [[50, 10, 90, 110], [100, 20, 140, 115]])
    h = run.features.input_size // 4
    assert seen == [(2, 25, h, h)]
    run.fit.tracks.tracks.clear()  # a new person: cold again
    img = np.zeros((H, W, 3), np.uint8)
    [m] = run.features.process(FrameMessage("cam0", 1, 0.04, img, persons=[
        Person(9, "tracking", np.array([20, 10, 60, 110], np.float32), 0.9)]))  # fmt: skip
    del m.persons[0].extras["part_logits"]
    [out] = run.fit.process(decode(encode(m)))
    assert seen[-1] is None and np.isfinite(out.persons[0].likelihood)
