"""Fused rendered-feature cosine (render_cosine): fast equals reference, gradients, edge cases."""

from __future__ import annotations

import pytest
import torch

from engines.render import RenderOutput, render, render_cosine, render_features

from ._scenes import blob, crop_camera

O, C = 3, 8


def _inputs(B=1, K=40, size=24, seed=0):
    centres = blob(K, 5.0, seed, B=B)
    camera = crop_camera(size=size, f=150.0, c=(size - 1) / 2)
    g = torch.Generator().manual_seed(seed + 1)
    table = torch.randn(K, O * C, generator=g, dtype=torch.float64)
    feats = torch.nn.functional.normalize(
        torch.randn(B, C, size, size, generator=g, dtype=torch.float64), dim=1
    )
    return centres, camera, table, feats


def _literal_cos(out, table, feats):  # the likelihood's former formula on render_features
    B, _, H, W = feats.shape
    phi = render_features(out, table).reshape(B, O, C, H, W)
    return (phi * feats[:, None]).sum(2) / phi.norm(dim=2).clamp_min(1e-8)


@pytest.mark.parametrize("batched_table", [False, True])
def test_fast_equals_reference_values_and_centre_grads(batched_table):
    centres, camera, table, feats = _inputs(B=2)
    if batched_table:
        table = torch.stack([table, table.flip(0)])
    up = torch.randn(2, O, 24, 24, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    res = {}
    for impl in ("fast", "reference"):
        c = centres.clone().requires_grad_(True)
        out = render(c, camera, M=6, impl=impl)
        cos = render_cosine(out, table, feats, O)
        (cos * up).sum().backward()
        res[impl] = (cos.detach(), c.grad)
        if impl == "fast":
            assert torch.allclose(cos, _literal_cos(out, table, feats), atol=1e-12)
    assert res["fast"][0].abs().sum() > 0
    assert torch.allclose(res["fast"][0], res["reference"][0], atol=1e-10)
    assert res["fast"][1].abs().sum() > 0
    assert torch.allclose(res["fast"][1], res["reference"][1], atol=1e-8, rtol=1e-6)


def test_gradcheck_weights():
    centres, camera, table, feats = _inputs(K=20, size=10, seed=3)
    with torch.no_grad():
        out = render(centres, camera, M=4)
    assert out.mask.any() and not out.mask.all()

    def f(w):
        o = RenderOutput(out.idx, w, out.mask, out.silhouette, out.visibility, impl="fast")
        return render_cosine(o, table, feats, O)

    # weights away from 0 (a pixel whose |Phi| is below the finite-difference step is not smooth
    # at that scale); empty slots stay 0 and get no gradient
    g = torch.Generator().manual_seed(4)
    w = torch.where(
        out.idx >= 0, 0.2 + torch.rand(out.idx.shape, generator=g, dtype=torch.float64), 0.0
    )
    assert torch.autograd.gradcheck(f, (w.requires_grad_(True),), eps=1e-6, atol=1e-6)


def test_empty_pixels_are_zero_without_nan_grads():
    centres, camera, table, feats = _inputs()
    for impl in ("fast", "reference"):
        c = centres.clone().requires_grad_(True)
        out = render(c, camera, M=6, impl=impl)
        cos = render_cosine(out, table, feats, O)
        assert (~out.mask).any()
        assert (cos.permute(0, 2, 3, 1)[~out.mask] == 0).all()
        cos.sum().backward()
        assert torch.isfinite(c.grad).all()


def test_float32_matches_float64():
    centres, camera, table, feats = _inputs()
    out = render(centres, camera, M=6)
    out32 = RenderOutput(
        out.idx, out.weights.float(), out.mask, out.silhouette, out.visibility, impl="fast"
    )
    c32 = render_cosine(out32, table.float(), feats.float(), O)
    assert c32.dtype == torch.float32
    assert torch.allclose(c32.double(), render_cosine(out, table, feats, O), atol=1e-5)


def test_bad_shapes_raise():
    centres, camera, table, feats = _inputs()
    out = render(centres, camera, M=6)
    with pytest.raises(ValueError, match="table"):
        render_cosine(out, table[:-1], feats, O)
    with pytest.raises(ValueError, match="table"):
        render_cosine(out, table[:, :-1], feats, O)
    with pytest.raises(ValueError, match="features"):
        render_cosine(out, table, feats[:, :-1], O)
    with pytest.raises(ValueError, match="num_bins"):
        render_cosine(out, table, feats, 0)
    with pytest.raises(ValueError, match="out"):
        render_cosine(out.weights, table, feats, O)
    with pytest.raises(ValueError, match="impl"):
        render_cosine(out, table, feats, O, impl="gpu")
