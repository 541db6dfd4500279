"""The runner end to end on a tiny untrained bundle and a short rendered sequence."""

from dataclasses import replace

import numpy as np
import pytest

from engines.body import BodyModel
from engines.evaluation.choice import choice_sweep, replay_choice
from engines.evaluation.runner import (
    Evaluator,
    MethodOutput,
    build_protocol,
    oracle,
    per_sample_mpjpe,
    project,
    score,
)
from engines.evaluation.samples import head_size_px, synthetic_sequences
from engines.fit_config import FitConfig
from engines.metrics import mpjpe

from ._helpers import S, tiny_bundle, walk_takes


@pytest.fixture(scope="module")
def setup():
    body = BodyModel.default()
    ev = Evaluator(
        tiny_bundle(body), body, FitConfig(stage1_steps=2, stage2_steps=2, warm_steps=2), batch=64
    )
    seqs = synthetic_sequences(1, 2, S, seed=0, takes=walk_takes())
    return ev, seqs


def test_sequences_have_consistent_ground_truth(setup):
    _, seqs = setup
    f = seqs[0].frames[0]
    assert f.image.shape == (S, S, 3) and f.silhouette.shape == (S, S) and f.silhouette.any()
    np.testing.assert_allclose(project(f.joints3d[None], f.K[None])[0], f.joints2d, atol=1e-3)
    assert f.visible.all()  # the crop frames the whole body
    assert 2.0 < f.head_size < S / 2
    assert head_size_px(f.joints3d, f.K) == pytest.approx(f.head_size)


def test_regression_state_matches_joints(setup):
    ev, seqs = setup
    f = seqs[0].frames[0]
    reg = ev.regress(f.image[None], f.K[None])
    out = ev.body(*reg.state.as_tuple())
    np.testing.assert_allclose(out.joints.numpy(), reg.joints.numpy(), atol=2e-4)
    assert reg.features.shape[-1] == S // 4


def test_regression_flip_averages_the_head_and_keeps_the_maps(setup):
    import torch

    from engines.featnet import normalize_images
    from engines.mirror import flip_average, flip_crops
    from engines.tracking import regression_init

    ev, seqs = setup
    flip = Evaluator(tiny_bundle(ev.body), ev.body, ev.config, batch=1, regression_flip=True)
    imgs = np.stack([f.image for f in seqs[0].frames])
    K = np.stack([f.K for f in seqs[0].frames])
    a, b = ev.regress(imgs, K), flip.regress(imgs, K)
    with torch.no_grad():
        x = normalize_images(imgs)
        avg = flip_average(ev.net(x), ev.net(normalize_images(flip_crops(imgs))))
    Kt = torch.as_tensor(K, dtype=torch.float32)
    ref = regression_init(avg["pose6d"], avg["betas"], avg["cam"], Kt, S)
    np.testing.assert_allclose(b.state.body_pose, ref.body_pose, atol=1e-5)
    np.testing.assert_allclose(b.state.transl, ref.transl, atol=1e-5)
    np.testing.assert_allclose(b.state.global_orient, a.state.global_orient, atol=1e-5)
    assert not np.allclose(a.state.body_pose, b.state.body_pose, atol=1e-4)
    np.testing.assert_allclose(b.features, a.features, atol=1e-5)
    np.testing.assert_allclose(b.part_logits, a.part_logits, atol=1e-5)


def test_per_sample_mpjpe_agrees_with_metrics():
    rng = np.random.default_rng(0)
    pred, gt = rng.normal(size=(3, 24, 3)), rng.normal(size=(3, 24, 3))
    vis = rng.random((3, 24)) > 0.3
    e = per_sample_mpjpe(pred, gt, vis)
    for i in range(3):
        assert e[i] == pytest.approx(mpjpe(pred[i : i + 1], gt[i : i + 1], vis[i : i + 1]))
    assert np.isnan(per_sample_mpjpe(pred[:1], gt[:1], np.zeros((1, 24), bool)))[0]


def test_advocc_keeps_the_regression_worst_case(setup):
    ev, seqs = setup
    f = seqs[0].frames[0]
    rng = np.random.default_rng(0)
    img, under, info = ev.advocc_worst(f.image, f.K, f.joints3d, f.joints2d, f.visible, 80,
                                       rng, None, grid_step=4)  # fmt: skip
    assert info["n_positions"] == 16
    # re-score every position independently: the kept one has the largest error
    from engines.evaluation.protocols import (
        advocc_grid,
        advocc_images,
        joints_under_patch,
        patch_texture,
    )

    grid = advocc_grid(S, 80, 4)
    tex = patch_texture(np.random.default_rng(0), grid.side, None)  # the same draw
    imgs = advocc_images(f.image, grid, tex)
    j = ev.regress(imgs, np.repeat(f.K[None], len(imgs), 0), features=False).joints.numpy()
    und = joints_under_patch(f.joints2d, grid.positions, grid.side, S)
    errs = per_sample_mpjpe(j, f.joints3d, f.visible[None] & ~und)
    assert errs.max() == pytest.approx(info["regression_mpjpe"], rel=1e-4)
    np.testing.assert_array_equal(img, imgs[int(np.argmax(errs))])
    k = [tuple(p) for p in grid.positions].index(tuple(info["position"]))
    np.testing.assert_array_equal(under, joints_under_patch(f.joints2d, grid.positions[k:k + 1],
                                                            grid.side, S)[0])  # fmt: skip


def test_methods_run_and_score(setup):
    ev, seqs = setup
    rng = np.random.default_rng(0)
    results = {}
    for proto in ("clean", "occ", "advocc80"):
        pf = build_protocol(ev, seqs[0], proto, rng, None, grid_step=8)
        assert pf.images.shape == (2, S, S, 3)
        reg_out, reg = ev.run_regression(pf)
        cold = ev.run_cold([pf], [reg], batch=2)
        plain = ev.run_cold([pf], [reg], plain=True, every=2)
        warm = ev.run_warm([pf], [reg], 1, cold)
        assert cold[0].steps.tolist() == [8, 8]  # 2 starts x (2 + 2)
        assert cold[0].hypotheses.shape == (2, 2, 24, 3)  # frames x starts
        best = oracle(cold, [pf])
        hyp_err = [per_sample_mpjpe(cold[0].hypotheses[:, k], pf.joints3d, pf.visible)
                   for k in range(2)]  # fmt: skip
        np.testing.assert_allclose(
            per_sample_mpjpe(best[0].joints3d, pf.joints3d, pf.visible), np.minimum(*hyp_err)
        )
        # the stored scores replay the cold fit's choice exactly; a huge bias keeps the
        # regression's start on every frame
        w = ev.fitter.config.part_weight
        np.testing.assert_allclose(replay_choice(cold, w)[0].joints3d, cold[0].joints3d,
                                   atol=1e-5)  # fmt: skip
        sweep = choice_sweep(cold, [pf], part_weights=(0.0, w), biases=(0.0, 1e9))
        assert sweep["flip_share"][0][1] == sweep["flip_share"][1][1] == 0.0
        first = replace(cold[0], joints3d=cold[0].hypotheses[:, 0])
        assert sweep["mpjpe"][1][1] == pytest.approx(score([first], [pf])["mpjpe"], abs=0.01)
        assert sweep["mpjpe"][1][0] == pytest.approx(score(cold, [pf])["mpjpe"], abs=0.01)
        assert plain[0].index.tolist() == [0]
        # from the cold fit, then 1 step from the track, its flip and (unless the same) the
        # regression's orientation
        assert warm[0].steps[0] == 8 and warm[0].steps[1] in (2, 3)
        np.testing.assert_allclose(warm[0].joints3d[0], cold[0].joints3d[0])
        named = (("regression", [reg_out]), ("cold", cold), ("plain", plain), ("warm", warm))
        r = {m: score(o, [pf]) for m, o in named}
        for m in r.values():
            assert np.isfinite(m["mpjpe"]) and m["mpjpe"] > 0
            assert 0.0 <= m["pckh"] <= 1.0 and m["ms_per_frame"] > 0
        assert r["plain"]["frames"] == 1 and r["cold"]["frames"] == 2
        assert r["warm"]["steps"] == warm[0].steps[1] and r["warm"]["frames"] == 2
        results[proto] = r
        if proto == "advocc80":
            assert (~pf.visible).any() or pf.info[0]["regression_mpjpe"] > 0
    assert results["clean"]["regression"]["steps"] == 0


def test_score_checks_lengths():
    with pytest.raises(ValueError):
        score([MethodOutput(np.zeros((1, 24, 3)), np.zeros(1), np.zeros(1), np.arange(1))], [])


def test_method_output_subset_keeps_the_selected_frames():
    rng = np.random.default_rng(0)
    out = MethodOutput(rng.normal(size=(4, 24, 3)), np.arange(4.0), np.ones(4), np.arange(4),
                       timed=np.array([False, True, True, True]))  # fmt: skip
    sub = out.subset(out.index % 2 == 0)
    np.testing.assert_array_equal(sub.index, [0, 2])
    np.testing.assert_array_equal(sub.joints3d, out.joints3d[[0, 2]])
    np.testing.assert_array_equal(sub.timed, [False, True])
    with pytest.raises(ValueError, match="keep"):
        out.subset(np.ones(3, bool))


def test_synthetic_sequences_split():
    with pytest.raises(ValueError, match="never 'train'"):
        synthetic_sequences(1, 2, S, split="train")
    from engines.synth.poses import VAL_TAKES

    val = synthetic_sequences(2, 2, S, seed=0, split="val")
    assert all(s.name.split("#")[0] in VAL_TAKES for s in val)
    held = synthetic_sequences(1, 2, S, seed=0)  # default: the holdout takes
    assert held[0].name.split("#")[0] not in VAL_TAKES


def test_oracle_needs_hypotheses():
    out = MethodOutput(np.zeros((1, 24, 3)), np.zeros(1), np.zeros(1), np.arange(1))
    with pytest.raises(ValueError, match="hypotheses"):
        oracle([out], [None])
