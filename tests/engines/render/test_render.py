import math

import pytest
import torch

from engines.render import TAU, Camera, pool_features, render, render_features
from tests.engines.render._scenes import blob, crop_camera


def _rand(shape, seed, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _run(impl, centres, camera, precision, M, table, up_w, up_f):
    c = centres.clone().requires_grad_(True)
    out = render(c, camera, precision, M, impl=impl)
    feat = render_features(out, table)
    loss = (feat * up_f).sum() + (out.weights * up_w).sum() + out.silhouette.sum()
    (grad,) = torch.autograd.grad(loss, c)
    return out, feat, grad


@pytest.mark.parametrize("M", [1, 10])
def test_fast_matches_reference_values_and_gradients(M):
    B, K, C = 2, 400, 8
    centres = blob(K, 27.0, seed=1, B=B)
    # per-body cameras, non-square map, principal points off centre
    camera = Camera(
        torch.tensor([1250.0, 1180.0], dtype=torch.float64),
        torch.tensor([1250.0, 1300.0], dtype=torch.float64),
        torch.tensor([31.0, 29.5], dtype=torch.float64),
        torch.tensor([40.0, 42.25], dtype=torch.float64),
        64,
        80,
    )
    precision = 4000.0 * (1 + 0.5 * torch.rand(K, generator=torch.Generator().manual_seed(2)))
    table = _rand((B, K, C), 3)
    up_w = _rand((B, 80, 64, M), 4)
    up_f = _rand((B, C, 80, 64), 5)
    ref = _run("reference", centres, camera, precision, M, table, up_w, up_f)
    fast = _run("fast", centres, camera, precision, M, table, up_w, up_f)
    (o_r, f_r, g_r), (o_f, f_f, g_f) = ref, fast
    assert o_r.mask.float().mean() > 0.2  # the scene covers a good part of the map
    assert (o_r.idx >= 0).sum(-1).max() == M  # lists are full somewhere
    assert torch.equal(o_r.idx, o_f.idx)
    assert torch.equal(o_r.mask, o_f.mask)
    assert torch.equal(o_r.visibility, o_f.visibility)
    torch.testing.assert_close(o_f.weights, o_r.weights, rtol=0, atol=1e-12)
    torch.testing.assert_close(o_f.silhouette, o_r.silhouette, rtol=0, atol=1e-12)
    torch.testing.assert_close(f_f, f_r, rtol=0, atol=1e-11)
    assert g_r.abs().max() > 1.0
    torch.testing.assert_close(g_f, g_r, rtol=1e-9, atol=1e-9 * g_r.abs().max().item())


def test_features_and_pooling_match_reference_with_gradients():
    B, K, C = 2, 300, 5
    centres = blob(K, 20.0, seed=7, B=B)
    camera = crop_camera(48, f=900.0, c=23.5)
    table = _rand((K, C), 8).requires_grad_(True)
    fmap = _rand((B, C, 48, 48), 9).requires_grad_(True)
    up = _rand((B, C, 48, 48), 10)
    results = {}
    for impl in ("reference", "fast"):
        out = render(centres, camera, impl=impl)
        feat = render_features(out, table)
        pooled, wsum = pool_features(out, fmap)
        loss = (feat * up).sum() + (pooled * table).sum() + wsum.sum()
        results[impl] = (feat, pooled, wsum, *torch.autograd.grad(loss, (table, fmap)))
    for a, b in zip(results["fast"], results["reference"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_gradcheck_small_scene():
    # six kernels of one small cluster 2 m away; every pixel sees several of them
    base = torch.tensor(
        [[0.0, 0.0, 2.0], [0.02, 0.01, 2.03], [-0.015, 0.02, 1.98], [0.01, -0.02, 2.06],
         [-0.02, -0.01, 2.01], [0.03, 0.025, 1.95]],
        dtype=torch.float64,
    )  # fmt: skip
    camera = Camera(300.0, 320.0, 5.5, 4.0, 12, 10)
    table = _rand((6, 3), 11)
    for impl, M in (("reference", 4), ("fast", 4), ("fast", 10)):
        centres = base[None].clone().requires_grad_(True)

        def f(c, impl=impl, M=M):
            out = render(c, camera, 4000.0, M, impl=impl)
            return render_features(out, table), out.weights, out.silhouette

        def sil(c, impl=impl, M=M):  # a silhouette-only loss (no gradient on the weights)
            return render(c, camera, 4000.0, M, impl=impl).silhouette

        assert render(base[None], camera, M=M, impl=impl).mask.all()
        assert torch.autograd.gradcheck(f, (centres,), eps=1e-7, atol=1e-6, rtol=1e-5)
        assert torch.autograd.gradcheck(sil, (centres,), eps=1e-7, atol=1e-6, rtol=1e-5)


def test_isolated_kernel_through_pixel_centre_has_unit_weight():
    # integer pixel centres: pixel (row 3, col 7) looks along ((7 - cx) / fx, (3 - cy) / fy, 1)
    camera = Camera(100.0, 120.0, 4.5, 5.0, 12, 10)
    z = 3.0
    mu = torch.tensor([[[(7 - 4.5) / 100.0 * z, (3 - 5.0) / 120.0 * z, z]]], dtype=torch.float64)
    for impl in ("reference", "fast"):
        out = render(mu, camera, impl=impl)
        assert out.weights[0, 3, 7, 0].item() == pytest.approx(1.0, abs=1e-12)
        assert out.weights[..., 0].argmax().item() == 3 * 12 + 7
        # footprint: the ray passes within sqrt(TAU / a) of the centre
        radius_px = 100.0 * math.sqrt(TAU / 4000.0) / z
        cols = out.mask[0, 3].nonzero().squeeze(1)
        assert cols.min() >= 7 - radius_px and cols.max() <= 7 + radius_px
        assert cols.max() - cols.min() >= 2 * math.floor(radius_px)
        assert out.visibility.tolist() == [[True]]


def test_kernel_behind_others_gets_near_zero_weight():
    # nine kernels 10 cm apart along one pixel ray, a tenth (the probe) behind them
    camera = crop_camera(16, f=200.0, c=7.5)
    ray = torch.tensor([(8 - 7.5) / 200.0, (8 - 7.5) / 200.0, 1.0], dtype=torch.float64)
    ray = ray / ray.norm()
    depths = 5.0 + 0.1 * torch.arange(10, dtype=torch.float64)
    centres = (depths[:, None] * ray)[None]  # [1, 10, 3], probe = kernel 9
    table = torch.zeros(10, 2, dtype=torch.float64)
    table[:9, 0] = 1.0
    table[9, 1] = 1.0
    for impl in ("reference", "fast"):
        out = render(centres, camera, M=10, impl=impl)
        assert out.idx[0, 8, 8].tolist() == list(range(10))  # front to back
        w = out.weights[0, 8, 8]
        # T_m = exp(-(m + 0.5)) for kernels on the ray: w_m = exp(-m)
        torch.testing.assert_close(w, torch.exp(-torch.arange(10.0, dtype=torch.float64)))
        assert w[9] < 2e-4
        feat = render_features(out, table)[0, :, 8, 8]
        assert feat[1] < 1e-3 * feat[0]
        alone = render(centres[:, 9:], camera, M=10, impl=impl)
        assert alone.weights[0, 8, 8, 0] == pytest.approx(1.0, abs=1e-12)
        # with one slot the probe never shows: not visible, the front kernel is
        front = render(centres, camera, M=1, impl=impl)
        assert not front.visibility[0, 9] and front.visibility[0, 0]
        assert front.weights[0, 8, 8, 0] == pytest.approx(math.exp(0.0), abs=1e-12)


def test_moving_a_kernel_moves_its_footprint():
    camera = crop_camera(32, f=250.0, c=15.5)
    mu = torch.tensor([[[0.0, 0.0, 4.0]]], dtype=torch.float64)
    shift = torch.tensor([0.08, -0.048, 0.0], dtype=torch.float64)  # 5 px right, 3 px up
    grid_j = torch.arange(32, dtype=torch.float64)
    for impl in ("reference", "fast"):
        maps = []
        for c in (mu, mu + shift):
            out = render(c, camera, impl=impl)
            maps.append(out)
        (a, b) = maps
        assert not torch.equal(a.mask, b.mask)
        for o, centre in ((a, (15.5, 15.5)), (b, (20.5, 12.5))):
            w = o.weights[0, ..., 0]
            u = (w.sum(0) * grid_j).sum() / w.sum()
            v = (w.sum(1) * grid_j).sum() / w.sum()
            assert (u.item(), v.item()) == pytest.approx(centre, abs=0.05)
            assert w.sum() > 0 and (w > 0).sum() == o.mask.sum()


def test_kernels_at_and_behind_the_camera_match_reference():
    # literal VoGE: the closest approach is taken on the whole line, so a kernel behind the
    # camera on a pixel's line is a candidate (with l < 0); one at the camera covers every pixel
    camera = crop_camera(16, f=200.0, c=7.5)
    centres = torch.cat(
        [
            torch.tensor([[0.01, 0.0, 0.02], [0.0, 0.0, -5.0], [0.0, 3.0, -5.0]]),
            blob(30, 5.0, seed=3)[0],
        ]
    ).double()[None]
    outs = [render(centres, camera, M=10, impl=impl) for impl in ("reference", "fast")]
    assert outs[0].mask.all() and (outs[0].idx == 0).any(-1).all()
    assert torch.equal(outs[0].idx, outs[1].idx)
    torch.testing.assert_close(outs[1].weights, outs[0].weights, rtol=0, atol=1e-12)


def test_empty_render():
    camera = crop_camera(16, f=200.0, c=7.5)
    far_off = torch.tensor([[[50.0, 0.0, 5.0], [0.0, 3.0, -5.0]]], dtype=torch.float64)
    for impl in ("reference", "fast"):
        c = far_off.clone().requires_grad_(True)
        out = render(c, camera, impl=impl)
        assert not out.mask.any() and not out.visibility.any()
        assert (out.idx == -1).all() and (out.weights == 0).all()
        feat = render_features(out, torch.ones(2, 3, dtype=torch.float64))
        (g,) = torch.autograd.grad(feat.sum() + out.silhouette.sum(), c, allow_unused=True)
        assert g is None or (g == 0).all()


def test_float32_far_body_is_accurate():
    # SPIN-like distance: float32 inputs must not lose the activation to cancellation
    centres = blob(858, 27.0, seed=12)
    camera = crop_camera()
    ref64 = render(centres, camera, impl="reference")
    for impl in ("reference", "fast"):
        out = render(centres.float(), camera, impl=impl)
        same = (out.idx == ref64.idx).all(-1)  # skip rare slot swaps from rounding
        assert same.float().mean() > 0.995
        err = (out.weights.double() - ref64.weights)[same].abs().max()
        assert err < 5e-4, (impl, err)  # the expanded act form errs by ~0.3 here


def test_visibility_and_silhouette_semantics():
    centres = blob(200, 10.0, seed=13)
    out = render(centres, crop_camera(40, f=300.0, c=19.5), M=5, impl="fast")
    front = out.idx[..., 0]
    expected = torch.zeros_like(out.visibility)
    expected[0, front[front >= 0]] = True
    assert torch.equal(out.visibility, expected)
    assert (out.silhouette <= 1).all() and (out.silhouette >= 0).all()
    assert torch.equal(out.mask, out.idx[..., 0] >= 0)
    assert ((out.idx >= 0) == (out.weights > 0)).all()
    # slots are front to back: depth along the pixel ray increases
    assert out.idx.dtype == torch.long and out.weights.dtype == torch.float64


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"centres": torch.zeros(5, 3)}, "centres"),
        ({"centres": torch.zeros(1, 5, 2)}, "centres"),
        ({"centres": torch.zeros(1, 5, 3, dtype=torch.int64)}, "centres"),
        ({"precision": torch.ones(4)}, "precision"),
        ({"precision": -1.0}, "precision"),
        ({"M": 0}, "M"),
        ({"impl": "gpu"}, "impl"),
        ({"camera": (100.0, 100.0, 8.0, 8.0, 16, 16)}, "camera"),
        ({"camera": Camera(torch.ones(3), 1.0, 0.0, 0.0, 4, 4)}, "camera"),
    ],
)
def test_bad_inputs_raise_value_error(kwargs, word):
    args = {
        "centres": torch.zeros(1, 5, 3),
        "camera": crop_camera(16),
        "precision": 4000.0,
        "M": 10,
        "impl": "fast",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        render(**args)


def test_bad_tables_and_feature_maps_raise_value_error():
    out = render(blob(20, 5.0, seed=0, B=2).float(), crop_camera(16, f=100.0, c=7.5))
    with pytest.raises(ValueError, match="table"):
        render_features(out, torch.zeros(21, 4))
    with pytest.raises(ValueError, match="table"):
        render_features(out, torch.zeros(3, 20, 4))
    with pytest.raises(ValueError, match="feature_map"):
        pool_features(out, torch.zeros(2, 4, 16, 15))
    with pytest.raises(ValueError, match="feature_map"):
        pool_features(out, torch.zeros(1, 4, 16, 16))
    with pytest.raises(ValueError, match="out"):
        render_features("not a render", torch.zeros(20, 4))


def test_pooling_a_constant_map_returns_the_constant():
    out = render(blob(300, 12.0, seed=5), crop_camera(48, f=700.0, c=23.5), impl="fast")
    v = torch.tensor([0.3, -1.2, 2.0], dtype=torch.float64)
    pooled, wsum = pool_features(out, v.view(1, 3, 1, 1).expand(1, 3, 48, 48))
    seen = wsum[0] > 1e-3
    assert seen.sum() > 100
    # phi_k = v sum_p w / (sum_p w + 1e-8)
    expected = v * (wsum / (wsum + 1e-8))[..., None]
    torch.testing.assert_close(pooled, expected, atol=1e-14, rtol=1e-12)
    torch.testing.assert_close(pooled[0, seen], v.expand(int(seen.sum()), 3), atol=3e-5, rtol=0)
    assert (pooled[0, wsum[0] == 0] == 0).all()


def test_fast_matches_reference_on_random_cameras_and_scenes():
    # wide and narrow fields of view, principal points off the map, anisotropic focal lengths,
    # per-kernel precisions, depths from 5 cm to 40 m, all slot counts
    g = torch.Generator().manual_seed(0)
    for _ in range(12):
        K = int(torch.randint(5, 150, (1,), generator=g))
        f = math.exp(float(torch.empty(1).uniform_(math.log(20), math.log(3000), generator=g)))
        W, H = (int(x) for x in torch.randint(8, 40, (2,), generator=g))
        cx, cy = (
            float(torch.empty(1).uniform_(-5, W + 5, generator=g)),
            float(torch.empty(1).uniform_(-5, H + 5, generator=g)),
        )
        z = math.exp(float(torch.empty(1).uniform_(math.log(0.05), math.log(40), generator=g)))
        spread = z * W / f * 0.7
        c = torch.randn(1, K, 3, generator=g, dtype=torch.float64)
        c = c * torch.tensor([spread, spread, min(spread, z / 2)], dtype=torch.float64)
        c = c + torch.tensor([(W / 2 - cx) / f * z, (H / 2 - cy) / f * z, z], dtype=torch.float64)
        prec = 4000 * torch.exp(torch.randn(K, generator=g, dtype=torch.float64))
        aspect = float(torch.empty(1).uniform_(0.7, 1.3, generator=g))
        camera = Camera(f, f * aspect, cx, cy, W, H)
        M = int(torch.randint(1, 12, (1,), generator=g))
        a = render(c, camera, prec, M, impl="reference")
        b = render(c, camera, prec, M, impl="fast")
        assert torch.equal(a.idx, b.idx)
        torch.testing.assert_close(b.weights, a.weights, rtol=0, atol=1e-12)


def test_fast_backward_of_weight_sums():
    from engines.render.common import camera_rays
    from engines.render.fast import extension

    centres = blob(300, 8.0, seed=21)
    camera = crop_camera(40, f=400.0, c=19.5)
    rays, intr = camera_rays(camera, torch.float64), camera.intrinsics()
    prec = torch.full((300,), 4000.0, dtype=torch.float64)
    ext = extension()
    idx, w, _, wsum = ext.forward(centres, rays, intr, prec, 10, TAU)
    torch.testing.assert_close(wsum, w.sum(-1), rtol=0, atol=1e-14)
    gw, gs = _rand(tuple(w.shape), 22), _rand(tuple(wsum.shape), 23)
    empty = torch.empty(0, dtype=torch.float64)
    both = ext.backward(gw, gs, centres, rays, prec, idx)
    assert both.abs().max() > 0
    # the sum's gradient acts as a gradient on every filled slot of its pixel
    as_w = ext.backward(gw + gs[..., None], empty, centres, rays, prec, idx)
    torch.testing.assert_close(both, as_w, rtol=0, atol=1e-12)
    split = ext.backward(gw, empty, centres, rays, prec, idx)
    split = split + ext.backward(empty, gs, centres, rays, prec, idx)
    torch.testing.assert_close(both, split, rtol=0, atol=1e-12)
