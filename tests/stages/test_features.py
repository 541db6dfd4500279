import logging

import numpy as np
import pytest
import torch

from engines.crop import frame_intrinsics
from engines.featnet import normalize_images
from engines.model import load_model
from pipeline.config import ConfigError, build
from pipeline.messages import FrameMessage, Person, decode, encode
from stages.base import StageContext
from stages.features import FeaturesParams, FeatureStage, ModelNotFoundError
from tests.stages.tiny_model import TINY_NET, save_tiny_bundle

D, h = TINY_NET["feature_dim"], TINY_NET["input_size"] // 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_bundle(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def _ctx():
    return StageContext(
        "features",
        "cam0",
        lambda c, m: None,
        lambda: False,
        lambda e: None,
        logging.getLogger("test"),
    )


def _stage(model, **kw):
    params = build(FeaturesParams, {"model": str(model), "backend": "torch", **kw})
    FeatureStage.preflight(params)
    st = FeatureStage(params, _ctx())
    st.setup()
    return st


def _frame(n_people, index=0, W=160, H=120):
    rng = np.random.default_rng(index)
    img = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    persons = [
        Person(i + 1, "tracking", np.array([10 + 40 * i, 10, 50 + 40 * i, 100], np.float32), 0.9)
        for i in range(n_people)
    ]
    return FrameMessage("cam0", index, index / 25, img, persons=persons)


def test_every_person_gets_its_crop_data(model):
    st = _stage(model)
    [out] = st.process(_frame(2))
    K = out.extras["camera_K"]
    np.testing.assert_allclose(K, frame_intrinsics(160, 120, 55.0))
    for q in out.persons:
        e = q.extras
        assert e["features"].shape == (D, h, h) and e["features"].dtype == np.float16
        norms = np.linalg.norm(e["features"].astype(np.float32), axis=0)
        np.testing.assert_allclose(norms, 1.0, atol=2e-3)  # unit features survive float16
        assert e["pose6d"].shape == (24, 6) and e["pose6d"].dtype == np.float32
        assert e["part_logits"].shape == (25, h, h) and e["part_logits"].dtype == np.float16
        assert e["betas"].shape == (10,) and e["cam"].shape == (3,)
        bx, by, s = e["crop_window"]
        box = q.box
        assert (bx, by) == pytest.approx(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
        assert s == pytest.approx(1.2 * 90)
        assert e["crop_K"][0, 0] == pytest.approx(K[0, 0] * 64 / s)
    # the wire codec carries everything (processes mode)
    back = decode(encode(out))
    np.testing.assert_array_equal(
        back.persons[1].extras["features"], out.persons[1].extras["features"]
    )
    np.testing.assert_array_equal(back.extras["camera_K"], K)
    st.close()


def test_batched_equals_one_by_one_and_matches_the_network(model):
    st = _stage(model, max_batch=2, feature_dtype="float32")
    [three] = st.process(_frame(3))
    net = load_model(model).net
    for i in range(3):
        single = _frame(3)
        single.persons = [single.persons[i]]
        [one] = st.process(single)
        np.testing.assert_allclose(
            one.persons[0].extras["features"], three.persons[i].extras["features"], atol=1e-5
        )
    from engines.crop import extract_crops, make_crop

    K = three.extras["camera_K"]
    crop = make_crop(K, three.persons[2].box, 64, 1.2, 32.0)
    img = extract_crops(_frame(3).image, [crop], (124, 116, 104))
    with torch.no_grad():
        ref = net(normalize_images(img))
    np.testing.assert_allclose(three.persons[2].extras["cam"], ref["cam"][0].numpy(), atol=1e-5)


def test_regression_flip_averages_the_head_over_the_mirrored_crop(model):
    from engines.crop import extract_crops, make_crop
    from engines.mirror import flip_average, flip_crops

    plain = _stage(model, feature_dtype="float32")
    flip = _stage(model, feature_dtype="float32", regression_flip=True, max_batch=3)
    [a] = plain.process(_frame(2))
    [b] = flip.process(_frame(2))
    net = load_model(model).net
    crop = make_crop(a.extras["camera_K"], a.persons[1].box, 64, 1.2, 32.0)
    img = extract_crops(_frame(2).image, [crop], (124, 116, 104))
    with torch.no_grad():
        ref = flip_average(net(normalize_images(img)), net(normalize_images(flip_crops(img))))
    for k in ("pose6d", "betas", "cam"):
        np.testing.assert_allclose(b.persons[1].extras[k], ref[k][0].numpy(), atol=1e-5)
    assert not np.allclose(a.persons[1].extras["pose6d"], b.persons[1].extras["pose6d"])
    for k in ("features", "part_logits"):  # the unflipped crop's maps
        np.testing.assert_allclose(a.persons[1].extras[k], b.persons[1].extras[k], atol=1e-5)


def test_frames_without_people_pass_through_and_intrinsics_can_be_given(model):
    st = _stage(model, fx=200.0, cx=70.0)
    empty = _frame(0)
    [out] = st.process(empty)
    assert out is empty and out.persons == [] and "camera_K" not in out.extras
    [out] = st.process(_frame(1))
    np.testing.assert_allclose(out.extras["camera_K"], [[200, 0, 70], [0, 200, 59.5], [0, 0, 1]])


def test_too_many_people_keeps_the_best_scores(model):
    st = _stage(model, max_people=2)
    msg = _frame(3)
    msg.persons[0].score = 0.1
    [out] = st.process(msg)
    assert [q.track_id for q in out.persons] == [2, 3]


def test_config_and_missing_model_errors(tmp_path):
    with pytest.raises(ConfigError, match="backend"):
        build(FeaturesParams, {"backend": "nope"})
    with pytest.raises(ConfigError, match="feature_dtype"):
        build(FeaturesParams, {"feature_dtype": "int8"})
    with pytest.raises(ConfigError, match="unknown key"):
        build(FeaturesParams, {"modle": "x"})
    with pytest.raises(ModelNotFoundError, match="not found"):
        FeatureStage.preflight(build(FeaturesParams, {"model": str(tmp_path / "none.safetensors")}))


@pytest.mark.slow
def test_onnxruntime_backend_agrees_with_torch(model, tmp_path):
    a = _stage(model, feature_dtype="float32")
    b = _stage(model, backend="onnxruntime", feature_dtype="float32", cache_dir=str(tmp_path))
    [x] = a.process(_frame(2))
    [y] = b.process(_frame(2))
    for k in ("features", "pose6d", "cam"):
        np.testing.assert_allclose(x.persons[1].extras[k], y.persons[1].extras[k], atol=1e-4)
