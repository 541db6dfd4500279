"""NBV fitting on feature maps synthesised from the model itself (analysis-by-synthesis)."""

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from engines.body import BodyModel
from engines.body_state import BodyState, flip_front_back, turn_about_vertical
from engines.fit_config import FitConfig
from engines.fitter import NBVFitter, hinge_prior
from engines.likelihood import orientation_pi
from engines.nbv import NeuralBodyVolume
from engines.render import Camera, render, render_features

C = 16


@pytest.fixture(scope="module")
def scene():
    torch.manual_seed(0)
    body = BodyModel.default()
    nbv = NeuralBodyVolume(body)
    K, O = nbv.num_kernels, nbv.num_bins
    table = F.normalize(torch.randn(K, O, C), dim=-1).reshape(K, O * C)
    clutter = F.normalize(torch.randn(C), dim=0)
    cam = Camera(fx=60.0, fy=60.0, cx=23.5, cy=23.5, width=48, height=48)
    v = body.v_template
    mid_y = float((v[:, 1].max() + v[:, 1].min()) / 2)
    pose = torch.zeros(1, 69)
    pose[0, 3 * 3 + 0] = 0.6  # left knee bent
    pose[0, 17 * 3 + 1] = -0.8  # left elbow bent
    pose[0, 15 * 3 + 2] = -0.9  # left shoulder down
    gt = BodyState(
        torch.tensor([[math.pi, 0.0, 0.0]]), pose, torch.zeros(1, 10),
        torch.tensor([[0.0, mid_y, 2.6]]),
    )  # fmt: skip
    return body, nbv, table, clutter, cam, gt


def _features(scene, state):
    body, nbv, table, clutter, cam, _ = scene
    centres, joints = nbv.pose(body, *state.as_tuple())
    out = render(centres, cam, 4000.0, 10)
    rend = render_features(out, table).reshape(1, -1, C, 48, 48)
    pi = orientation_pi(render_features(out, nbv.orientation_weights(joints)))
    fg = (pi[:, :, None] * F.normalize(rend, dim=2)).sum(1)
    g = torch.Generator().manual_seed(1)
    bg = F.normalize(
        clutter[None, :, None, None] + 0.5 * torch.randn(1, C, 48, 48, generator=g), dim=1
    )
    sil = out.silhouette[:, None] > 0.1
    return F.normalize(torch.where(sil, fg, bg), dim=1), joints


def _perturb(state, d_transl=(0.06, -0.05, 0.15), d_orient=0.12, pose_noise=0.15, seed=2):
    g = torch.Generator().manual_seed(seed)
    return BodyState(
        state.global_orient + d_orient * torch.tensor([[0.3, 1.0, 0.2]]),
        state.body_pose + pose_noise * torch.randn(1, 69, generator=g) * 0.5,
        state.betas.clone(),
        state.transl + torch.tensor([d_transl]),
    )


def _joint_err(scene, state, gt_joints):
    body = scene[0]
    j = body(*state.as_tuple()).joints
    return (j - gt_joints).norm(dim=-1).mean().item()


def test_objective_is_lowest_at_the_truth(scene):
    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    fitter = NBVFitter(body, nbv, table, clutter, FitConfig())
    at_gt, _, _ = fitter.objective(gt, feats, cam)
    off, _, _ = fitter.objective(_perturb(gt), feats, cam)
    assert at_gt.item() < off.item()


def test_cold_start_recovers_the_pose_and_keeps_inputs(scene):
    body, nbv, table, clutter, cam, gt = scene
    feats, gt_joints = _features(scene, gt)
    init = _perturb(gt)
    before = [t.clone() for t in init.as_tuple()]
    cfg = FitConfig(stage1_steps=30, stage2_steps=40, lr=0.01, flip_hypothesis=True)
    res = NBVFitter(body, nbv, table, clutter, cfg).cold_start(init, feats, cam)
    err0, err1 = _joint_err(scene, init, gt_joints), _joint_err(scene, res.state, gt_joints)
    assert err1 < 0.5 * err0, (err0, err1)
    assert res.steps == 2 * 70
    assert not res.lost.item()
    for a, b in zip(before, init.as_tuple()):
        assert torch.equal(a, b)
    # both fitted starts, start-major; the chosen one is among them
    assert res.hypotheses is not None and res.hypotheses.batch == 2
    chosen = [torch.equal(res.hypotheses.select([k]).body_pose, res.state.body_pose)
              for k in range(2)]  # fmt: skip
    assert any(chosen)
    one = NBVFitter(body, nbv, table, clutter, replace(cfg, flip_hypothesis=False, stage2_steps=1))
    assert one.cold_start(init, feats, cam).hypotheses is None


def test_turned_hypotheses_undo_a_quarter_turn(scene):
    body, nbv, table, clutter, cam, gt = scene
    feats, gt_joints = _features(scene, gt)
    pelvis = body.rest_joints(gt.betas)[:, 0]
    init = _perturb(turn_about_vertical(gt, pelvis, 90.0), d_orient=0.05, pose_noise=0.05)
    base = dict(stage1_steps=20, stage2_steps=10, lr=0.01, flip_hypothesis=True)
    errs, steps = {}, {}
    turn = {"turn_hypotheses": True}
    for name, extra in (
        ("flip", {}),
        ("turn", turn),
        ("turn_k1", {**turn, "stage2_hypotheses": 1}),
    ):
        res = NBVFitter(body, nbv, table, clutter, FitConfig(**base, **extra)).cold_start(
            init, feats, cam
        )
        errs[name], steps[name] = _joint_err(scene, res.state, gt_joints), res.steps
    assert errs["flip"] > 0.1, errs  # a local fit from 0 / 180 degrees does not get there
    assert errs["turn"] < 0.08 and errs["turn_k1"] < 0.08, errs
    assert steps == {"flip": 2 * 30, "turn": 4 * 30, "turn_k1": 4 * 20 + 10}


def test_warm_start_tracks_a_small_motion(scene):
    body, nbv, table, clutter, cam, gt = scene
    feats, gt_joints = _features(scene, gt)
    prev = _perturb(gt, d_transl=(0.03, 0.02, 0.05), d_orient=0.05, pose_noise=0.05, seed=3)
    cfg = FitConfig(warm_steps=10, warm_lr=0.01, warm_flip_hypothesis=False)
    res = NBVFitter(body, nbv, table, clutter, cfg).warm_start(prev, feats, cam)
    assert _joint_err(scene, res.state, gt_joints) < 0.7 * _joint_err(scene, prev, gt_joints)
    assert res.steps == 10


def test_occluder_is_explained_as_clutter(scene):
    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    occ = feats.clone()
    occ[:, :, 14:34, 8:40] = clutter[None, :, None, None]
    fitter = NBVFitter(body, nbv, table, clutter, FitConfig(warm_steps=0))
    clean = fitter.warm_start(gt, feats, cam)
    res = fitter.warm_start(gt, occ, cam)
    box = torch.zeros(48, 48, dtype=torch.bool)
    box[14:34, 8:40] = True
    covered = render(nbv.pose(body, *gt.as_tuple())[0], cam, 4000.0, 10).silhouette[0] > 0.1
    inside = res.occlusion[0][box & covered].float().mean()
    outside = res.occlusion[0][~box & covered].float().mean()
    assert inside > 0.5 and outside < 0.1
    assert res.occluded_fraction.item() > clean.occluded_fraction.item() + 0.2
    assert res.occluded.item() and not clean.occluded.item()


def test_a_clutter_mixture_explains_an_occluder_the_mean_direction_cannot(scene):
    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    occ = feats.clone()
    occ[:, :, 14:34, 8:40] = -clutter[None, :, None, None]  # clutter far from the mean direction
    box = torch.zeros(48, 48, dtype=torch.bool)
    box[14:34, 8:40] = True
    covered = render(nbv.pose(body, *gt.as_tuple())[0], cam, 4000.0, 10).silhouette[0] > 0.1
    cfg = FitConfig(warm_steps=0)
    one = NBVFitter(body, nbv, table, clutter, cfg).warm_start(gt, occ, cam)
    mix = NBVFitter(body, nbv, table, torch.stack([clutter, -clutter]), cfg).warm_start(
        gt, occ, cam
    )
    assert one.occlusion[0][box & covered].float().mean() < 0.2
    assert mix.occlusion[0][box & covered].float().mean() > 0.8
    assert mix.occlusion[0][~box & covered].float().mean() < 0.1
    with pytest.raises(ValueError, match="clutter"):
        NBVFitter(body, nbv, table, torch.stack([clutter, -clutter])[:, :-1], cfg)


def test_body_gone_is_lost(scene):
    body, nbv, table, clutter, cam, gt = scene
    only_clutter = clutter[None, :, None, None].expand(1, C, 48, 48).contiguous()
    res = NBVFitter(body, nbv, table, clutter, FitConfig(warm_steps=2)).warm_start(
        gt, only_clutter, cam
    )
    assert res.lost.item()
    away = BodyState(
        gt.global_orient, gt.body_pose, gt.betas, gt.transl + torch.tensor([[9.0, 0, 0]])
    )
    res = NBVFitter(body, nbv, table, clutter, FitConfig(warm_steps=0)).warm_start(
        away, _features(scene, gt)[0], cam
    )
    assert res.lost.item() and res.coverage.item() == 0


def test_hinge_prior_prefers_natural_bends():
    natural = torch.zeros(1, 69)
    natural[0, 9] = 1.0  # left knee flexed (calf backwards)
    unnatural = torch.zeros(1, 69)
    unnatural[0, 9] = -1.0
    assert hinge_prior(natural) < hinge_prior(unnatural)


def test_bad_inputs(scene):
    body, nbv, table, clutter, cam, gt = scene
    fitter = NBVFitter(body, nbv, table, clutter)
    with pytest.raises(ValueError, match="channels"):
        fitter.warm_start(gt, torch.zeros(1, C + 1, 48, 48), cam)
    with pytest.raises(ValueError, match="camera"):
        fitter.warm_start(gt, torch.zeros(1, C, 40, 48), cam)
    with pytest.raises(ValueError, match="kernel_table"):
        NBVFitter(body, nbv, table[:10], clutter)


def test_finish_reuses_the_final_evaluation_exactly(scene):
    """The warm start's result (final iterate evaluated inside the loop, no autograd) equals a
    fresh evaluation of the returned state."""
    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    fitter = NBVFitter(body, nbv, table, clutter, FitConfig(warm_steps=3, warm_lr=0.01))
    res = fitter.warm_start(_perturb(gt, pose_noise=0.05, seed=4), feats, cam)
    again = fitter._finish(res.state, feats, cam, res.steps)
    for name in ("loss", "likelihood", "occluded_fraction", "coverage", "joints", "occlusion"):
        torch.testing.assert_close(getattr(res, name), getattr(again, name), msg=name)


def test_render_auto_is_the_cpp_path_on_cpu(scene):
    body, nbv, _, _, cam, gt = scene
    centres, _ = nbv.pose(body, *gt.as_tuple())
    assert render(centres, cam).impl == "fast"
    with pytest.raises(ValueError, match="impl"):
        render(centres, cam, impl="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_objective_on_cuda_matches_cpu(scene):
    """The CUDA path (dense torch renderer, torch kinematic chain) gives the CPU objective."""
    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    state = _perturb(gt)
    cpu = NBVFitter(body, nbv, table, clutter).objective(state, feats, cam)[0]
    dev = torch.device("cuda")
    body_d, nbv_d = BodyModel.default().to(dev), NeuralBodyVolume(BodyModel.default()).to(dev)
    st = BodyState(*(t.to(dev) for t in state.as_tuple()))
    fitter = NBVFitter(body_d, nbv_d, table.to(dev), clutter.to(dev))
    gpu = fitter.objective(st, feats.to(dev), cam)[0]
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)


def test_pose_prior_term_is_in_the_objective(scene):
    """The learned pose prior (training takes' Gaussian + joint limits) adds
    ``pose_prior_weight * PosePrior(body_pose)``; weight 0 leaves it out."""
    from engines.motion.sampler import PosePrior

    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    odd = BodyState(gt.global_orient, gt.body_pose + 1.5, gt.betas, gt.transl)  # far-out joints
    without = NBVFitter(body, nbv, table, clutter, FitConfig(pose_prior_weight=0.0))
    with_prior = NBVFitter(body, nbv, table, clutter, FitConfig(pose_prior_weight=0.5))
    assert without.pose_prior is None
    a = without.objective(odd, feats, cam)[0]
    b = with_prior.objective(odd, feats, cam)[0]
    torch.testing.assert_close(b - a, 0.5 * PosePrior.default()(odd.body_pose))
    assert PosePrior.default()(odd.body_pose) > PosePrior.default()(gt.body_pose)


def test_regression_prior_pulls_the_body_pose_towards_the_anchor(scene):
    """``regression_prior_weight * sum((body_pose - anchor)^2)`` is in the objective when an
    anchor is given; cold_start anchors at its start, warm_start at the frame's regression."""
    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    anchor = gt.body_pose + 0.2
    plain = NBVFitter(body, nbv, table, clutter, FitConfig(regression_prior_weight=0.0))
    pulled = NBVFitter(body, nbv, table, clutter, FitConfig(regression_prior_weight=0.7))
    a = plain.objective(gt, feats, cam, anchor)[0]
    b = pulled.objective(gt, feats, cam, anchor)[0]
    torch.testing.assert_close(b - a, torch.tensor([0.7 * 69 * 0.04]))
    torch.testing.assert_close(pulled.objective(gt, feats, cam)[0], a)  # no anchor: no term

    # a warm start with a strong pull ends nearer the regression's body pose than without
    prev = _perturb(gt, d_transl=(0.0, 0.0, 0.0), d_orient=0.0, pose_noise=0.0)
    reg = BodyState(gt.global_orient, anchor, gt.betas, gt.transl)
    cfg = dict(warm_steps=6, warm_lr=0.02)
    free = NBVFitter(body, nbv, table, clutter, FitConfig(**cfg)).warm_start(
        prev, feats, cam, regression=reg
    )
    held = NBVFitter(body, nbv, table, clutter, FitConfig(regression_prior_weight=5.0, **cfg))
    res = held.warm_start(prev, feats, cam, regression=reg)
    d_free = (free.state.body_pose - anchor).norm()
    assert (res.state.body_pose - anchor).norm() < d_free
    with pytest.raises(ValueError, match="regression"):
        held.warm_start(prev, feats, cam, regression=BodyState.cat([reg, reg]))


def test_warm_pose_blend_starts_between_the_previous_fit_and_the_regression(scene):
    """``warm_pose_blend`` a: the start's body pose is (1 - a) prev + a regression; orientation,
    shape and translation stay the previous fit's; without a regression nothing is blended."""
    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    prev = _perturb(gt, pose_noise=0.2, seed=5)
    reg = BodyState(gt.global_orient + 0.3, gt.body_pose, gt.betas + 0.1, gt.transl + 0.05)
    for a in (0.0, 0.5, 1.0):
        cfg = FitConfig(
            warm_steps=0,
            warm_pose_blend=a,
            regression_prior_weight=0.0,
            warm_orient_hypothesis=False,
        )
        res = NBVFitter(body, nbv, table, clutter, cfg).warm_start(prev, feats, cam, regression=reg)
        want = (1 - a) * prev.body_pose + a * reg.body_pose
        torch.testing.assert_close(res.state.body_pose, want)
        torch.testing.assert_close(res.state.global_orient, prev.global_orient)
        torch.testing.assert_close(res.state.transl, prev.transl)
        torch.testing.assert_close(res.state.betas, prev.betas)
    alone = NBVFitter(body, nbv, table, clutter, cfg).warm_start(prev, feats, cam)
    torch.testing.assert_close(alone.state.body_pose, prev.body_pose)
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="warm_pose_blend"):
            FitConfig(warm_pose_blend=bad)


def test_warm_orient_hypothesis_follows_a_fast_turn_and_keeps_a_good_track(scene):
    """Body 0: the previous fit is 45 degrees behind a turn (more than the warm steps rotate)
    and the regression's orientation is near the truth; body 1: the previous fit is near the
    truth and the regression is turned 120 degrees. With the hypothesis (the previous fit turned
    to the regression's orientation) each body keeps the right start."""
    body, nbv, table, clutter, cam, gt = scene
    feats, gt_joints = _features(scene, gt)
    pelvis = body.rest_joints(gt.betas)[:, 0]
    near = _perturb(gt, d_transl=(0.02, 0.01, 0.03), d_orient=0.03, pose_noise=0.03, seed=7)
    prev = BodyState.cat([turn_about_vertical(near, pelvis, 45.0), near])
    reg = BodyState.cat([near, turn_about_vertical(near, pelvis, 120.0)])
    feats2, cam2 = feats.expand(2, -1, -1, -1), cam
    cfg = dict(warm_steps=6, warm_lr=0.01, regression_prior_weight=0.0, warm_flip_hypothesis=False)
    plain = NBVFitter(body, nbv, table, clutter, FitConfig(warm_orient_hypothesis=False, **cfg))
    hyp = NBVFitter(body, nbv, table, clutter, FitConfig(warm_orient_hypothesis=True, **cfg))
    a = plain.warm_start(prev, feats2, cam2, regression=reg)
    b = hyp.warm_start(prev, feats2, cam2, regression=reg)
    err = lambda r, i: _joint_err(scene, r.state.select([i]), gt_joints)  # noqa: E731
    assert err(a, 0) > 0.1 and err(b, 0) < 0.05, (err(a, 0), err(b, 0))
    assert err(b, 1) < 0.05 and err(b, 1) == pytest.approx(err(a, 1), abs=1e-6)
    assert a.steps == 6 and b.steps == 12
    alone = hyp.warm_start(prev, feats2, cam2)  # without a regression: the plain warm start
    torch.testing.assert_close(alone.state.global_orient, plain.warm_start(prev, feats2, cam2)
                               .state.global_orient)  # fmt: skip
    assert alone.steps == 6
    again = hyp.warm_start(reg, feats2, cam2, regression=reg)  # a re-init from the regression
    assert again.steps == 6  # one start, not the same one twice


def _part_logits(scene, state):
    """Part-head logits that put each pixel's mass on the part the body shows there."""
    body, nbv, *_ = scene
    fitter = NBVFitter(*scene[:4])
    centres, _ = nbv.pose(body, *state.as_tuple())
    out = render(centres, scene[4], 4000.0, 10)
    front = torch.where(out.idx[..., 0] >= 0, fitter.part_labels[out.idx[..., 0].clamp(min=0)], 0)
    return 6.0 * F.one_hot(front, 25).permute(0, 3, 1, 2).float()  # [1, 25, 48, 48]


def test_part_score_tells_the_truth_from_its_flip_and_decides_between_hypotheses(scene):
    """The part term scores the truth above its front/back flip (left and right parts swap in
    the image). It only enters the cold start's choice between hypotheses: part logits of the
    flipped body and a large weight make the flipped hypothesis win; without logits, with
    weight 0 or without the flip hypothesis the fit is the plain one."""
    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    flipped = flip_front_back(gt, body.rest_joints(gt.betas)[:, 0])
    fitter = NBVFitter(body, nbv, table, clutter, FitConfig())
    logp = torch.log_softmax(_part_logits(scene, gt), dim=1)
    assert float(fitter.part_score(gt, cam, logp)) < float(fitter.part_score(flipped, cam, logp))
    with pytest.raises(ValueError, match="part_logits"):
        fitter.cold_start(gt, feats, cam, part_logits=_part_logits(scene, gt)[:, :24])

    cfg = dict(stage1_steps=3, stage2_steps=3)
    start = _perturb(gt)
    lying = _part_logits(scene, flip_front_back(start, body.rest_joints(gt.betas)[:, 0]))
    plain = NBVFitter(body, nbv, table, clutter, FitConfig(**cfg)).cold_start(start, feats, cam)
    swayed = NBVFitter(body, nbv, table, clutter, FitConfig(part_weight=100.0, **cfg))
    res = swayed.cold_start(start, feats, cam, part_logits=lying)
    go = lambda r: r.state.global_orient  # noqa: E731
    assert (go(res) - go(plain)).norm() > 1.0  # the other (flipped) hypothesis won
    # the stored scores replay that choice: objective + part_weight x part term, start-major
    sc = res.hypothesis_scores  # [S*B, 2]
    assert sc.shape == (2, 2) and torch.isfinite(sc).all()
    k = int((sc[:, 0] + 100.0 * sc[:, 1]).argmin())
    assert k == 1 and torch.equal(res.hypotheses.select([k]).global_orient, go(res))
    for i in range(2):  # the part term is part_score of that hypothesis
        logp_lying = torch.log_softmax(lying, dim=1)
        term = swayed.part_score(res.hypotheses.select([i]), cam, logp_lying)
        torch.testing.assert_close(sc[i, 1], term[0])
    assert torch.isnan(plain.hypothesis_scores[:, 1]).all()  # no logits: no part term
    torch.testing.assert_close(plain.hypothesis_scores[:, 0], sc[:, 0])  # same fits
    for f, logits in (
        (NBVFitter(body, nbv, table, clutter, FitConfig(part_weight=0.0, **cfg)), lying),
        (swayed, None),
    ):
        torch.testing.assert_close(go(f.cold_start(start, feats, cam, part_logits=logits)),
                                   go(plain))  # fmt: skip
    one = FitConfig(part_weight=100.0, flip_hypothesis=False, **cfg)
    f = NBVFitter(body, nbv, table, clutter, one)
    torch.testing.assert_close(go(f.cold_start(start, feats, cam, part_logits=lying)),
                               go(f.cold_start(start, feats, cam)))  # fmt: skip


def test_starts_in_one_batch_equal_separate_runs(scene):
    """_optimise_starts runs S starts as one S x B batch: the same per-body result as S runs."""
    body, nbv, table, clutter, cam, gt = scene
    feats, _ = _features(scene, gt)
    fitter = NBVFitter(body, nbv, table, clutter, FitConfig())
    pelvis = body.rest_joints(gt.betas)[:, 0]
    starts = [_perturb(gt), flip_front_back(_perturb(gt, seed=3), pelvis)]
    anchors = [s.body_pose for s in starts]
    free = ("global_orient", "body_pose", "transl")
    together, ev = fitter._optimise_starts(starts, feats, cam, free, 6, 0.02, anchors, anchor=gt)
    assert ev is None and len(together) == 2
    for (st, loss), s, a in zip(together, starts, anchors, strict=True):
        alone, alone_loss, _ = fitter._optimise(s, feats, cam, free, 6, 0.02, gt, a)
        assert st.batch == 1
        torch.testing.assert_close(loss, alone_loss, rtol=1e-4, atol=1e-4)
        for x, y in zip(st.as_tuple(), alone.as_tuple(), strict=True):
            torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-4)  # float rounding x 6 Adam steps
    with pytest.raises(ValueError, match="all be tensors or all None"):
        fitter._optimise_starts(starts, feats, cam, free, 1, 0.02, [anchors[0], None])


def test_camera_repeat_stacks_per_body_cameras():
    shared = Camera(60.0, 61.0, 23.5, 23.0, 48, 48)
    assert shared.repeat(3) is shared
    per_body = Camera(torch.tensor([60.0, 70.0]), torch.tensor([61.0, 71.0]),
                      torch.tensor([23.5, 20.0]), torch.tensor([23.0, 21.0]), 48, 48)  # fmt: skip
    rep = per_body.repeat(2)
    assert rep.batch == 4 and (rep.width, rep.height) == (48, 48)
    torch.testing.assert_close(rep.fx, torch.tensor([60.0, 70.0, 60.0, 70.0]))
    torch.testing.assert_close(rep.cy, torch.tensor([23.0, 21.0, 23.0, 21.0]))


def test_warm_flip_hypothesis_gets_a_track_out_of_the_wrong_facing(scene):
    """A track flipped front to back stays flipped under plain warm steps; with the flip
    hypothesis (and the part term) it comes back, and a right track is kept."""
    body, nbv, table, clutter, cam, gt = scene
    feats, gt_joints = _features(scene, gt)
    parts = _part_logits(scene, gt).expand(2, -1, -1, -1)
    pelvis = body.rest_joints(gt.betas)[:, 0]
    near = _perturb(gt, d_transl=(0.02, 0.01, 0.03), d_orient=0.03, pose_noise=0.03, seed=7)
    prev = BodyState.cat([flip_front_back(near, pelvis), near])
    feats2 = feats.expand(2, -1, -1, -1)
    cfg = dict(warm_steps=6, warm_lr=0.01, warm_orient_hypothesis=False)
    plain = NBVFitter(body, nbv, table, clutter, FitConfig(warm_flip_hypothesis=False, **cfg))
    flip = NBVFitter(body, nbv, table, clutter, FitConfig(warm_flip_hypothesis=True, **cfg))
    a = plain.warm_start(prev, feats2, cam, part_logits=parts)
    b = flip.warm_start(prev, feats2, cam, part_logits=parts)
    err = lambda r, i: _joint_err(scene, r.state.select([i]), gt_joints)  # noqa: E731
    assert err(a, 0) > 0.1 and err(b, 0) < 0.05, (err(a, 0), err(b, 0))
    assert err(b, 1) < 0.05 and err(b, 1) == pytest.approx(err(a, 1), abs=1e-4)
    assert a.steps == 6 and b.steps == 12
    both = NBVFitter(
        body, nbv, table, clutter, FitConfig(**{**cfg, "warm_orient_hypothesis": True})
    )
    reg = BodyState.cat([near, near])
    assert both.warm_start(prev, feats2, cam, regression=reg, part_logits=parts).steps == 18
