import pytest
import torch
import torch.nn.functional as F

from engines.likelihood import clutter_score, feature_likelihood, orientation_pi


def _scene(b=2, c=8, o=3, h=6, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = F.normalize(torch.randn(b, c, h, w, generator=g), dim=1)
    rendered = torch.randn(b, o * c, h, w, generator=g)
    orient = torch.rand(b, o, h, w, generator=g)
    mask = torch.rand(b, h, w, generator=g) > 0.4
    clutter = F.normalize(torch.randn(c, generator=g), dim=0)
    return feats, rendered, orient, mask, clutter


def test_plain_matches_literal_formula():
    feats, rendered, orient, mask, clutter = _scene()
    out = feature_likelihood(feats, rendered, orient, mask, clutter, robust=False)
    b, c, h, w = feats.shape
    loss = torch.zeros(b)
    for i in range(b):
        total = 0.0
        for y in range(h):
            for x in range(w):
                f = feats[i, :, y, x]
                if mask[i, y, x]:
                    wts = orient[i, :, y, x] / orient[i, :, y, x].sum()
                    s = sum(
                        wts[k] * F.cosine_similarity(rendered[i, k * c : (k + 1) * c, y, x], f, 0)
                        for k in range(3)
                    )
                else:
                    s = torch.dot(f, clutter)
                total += s
        loss[i] = 1 - total / (h * w)
    assert torch.allclose(out.loss, loss, atol=1e-5)


def test_robust_soft_max_and_occlusion_map():
    feats, rendered, orient, mask, clutter = _scene(seed=1)
    out = feature_likelihood(feats, rendered, orient, mask, clutter, robust=True)
    a = ((out.obj + 1) / 2).clamp(1e-8, 1)
    bb = (out.clu + 1) / 2
    sa = torch.exp(a / 0.1) / (torch.exp(a / 0.1) + torch.exp(bb / 0.1))
    m = a * sa + bb * (1 - sa)
    assert torch.allclose(out.loss, (1 - m).mean(dim=(1, 2)), atol=1e-6)
    assert torch.equal(out.occluded, (bb > a) & mask)
    assert (out.occluded_fraction >= 0).all() and (out.occluded_fraction <= 1).all()


def test_perfect_render_scores_better_than_wrong_render():
    feats, _, orient, _, clutter = _scene(b=1, seed=2)
    mask = torch.ones(1, 6, 5, dtype=torch.bool)
    good = feats.repeat(1, 3, 1, 1) * 3.0
    bad = -good
    for robust in (False, True):
        lg = feature_likelihood(feats, good, orient, mask, clutter, robust=robust).loss
        lb = feature_likelihood(feats, bad, orient, mask, clutter, robust=robust).loss
        assert lg < lb
    # robust: a pixel the body cannot explain falls back to the clutter score, bounded loss
    out = feature_likelihood(feats, bad, orient, mask, clutter, robust=True)
    assert out.occluded.any()


def test_gradient_reaches_render_not_clutter():
    feats, rendered, orient, mask, clutter = _scene(seed=3)
    rendered.requires_grad_(True)
    feature_likelihood(feats, rendered, orient, mask, clutter).loss.sum().backward()
    assert rendered.grad is not None and rendered.grad.abs().sum() > 0


def test_orientation_pi_modes():
    orient = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    assert torch.allclose(orientation_pi(orient, "normalize").flatten(), torch.tensor([1.0, 0, 0]))
    sm = orientation_pi(orient, "softmax").flatten()
    assert sm[0] > sm[1] and torch.isclose(sm.sum(), torch.tensor(1.0))
    zero = torch.zeros(1, 3, 1, 1)
    assert torch.allclose(orientation_pi(zero).flatten(), torch.full((3,), 1 / 3))
    with pytest.raises(ValueError, match="mode"):
        orientation_pi(orient, "max")


def test_bad_shapes_name_the_argument():
    feats, rendered, orient, mask, clutter = _scene()
    with pytest.raises(ValueError, match="rendered"):
        feature_likelihood(feats, rendered[:, :5], orient, mask, clutter)
    with pytest.raises(ValueError, match="mask"):
        feature_likelihood(feats, rendered, orient, mask[:, :2], clutter)
    with pytest.raises(ValueError, match="clutter"):
        feature_likelihood(feats, rendered, orient, mask, clutter[:3])
    with pytest.raises(ValueError, match="features"):
        feature_likelihood(feats[0], rendered, orient, mask, clutter)


def test_part_likelihood_matches_literal_formula_and_has_gradients():
    from engines.likelihood import part_likelihood

    g = torch.Generator().manual_seed(3)
    b, h, w, m, k, p = 2, 3, 4, 3, 7, 5
    idx = torch.randint(-1, k, (b, h, w, m), generator=g)
    weights = (torch.rand(b, h, w, m, generator=g) * 0.8 * (idx >= 0)).requires_grad_(True)
    labels = torch.randint(1, p, (k,), generator=g)
    logp = torch.log_softmax(torch.randn(b, p, h, w, generator=g), dim=1)
    loss = part_likelihood(idx, weights, labels, logp)
    want = torch.zeros(b)
    for bi in range(b):
        num, den = 0.0, 0.0
        for y in range(h):
            for x in range(w):
                for s_ in range(m):
                    if idx[bi, y, x, s_] >= 0:
                        wt = float(weights[bi, y, x, s_].detach())
                        num += wt * float(logp[bi, labels[idx[bi, y, x, s_]], y, x])
                        den += wt
        want[bi] = -num / den
    torch.testing.assert_close(loss.detach(), want)
    loss.sum().backward()
    assert weights.grad is not None and weights.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="log_probs"):
        part_likelihood(idx, weights, labels, logp[:, :, :2])
    with pytest.raises(ValueError, match="idx and weights"):
        part_likelihood(idx, weights[..., :2], labels, logp)


def test_clutter_mixture_scores_the_best_direction():
    feats, rendered, orient, mask, clutter = _scene(seed=5)
    # one row is the single direction
    for robust in (False, True):
        one = feature_likelihood(feats, rendered, orient, mask, clutter, robust=robust)
        row = feature_likelihood(feats, rendered, orient, mask, clutter[None], robust=robust)
        assert torch.allclose(one.loss, row.loss)
    g = torch.Generator().manual_seed(6)
    mix = F.normalize(torch.randn(4, clutter.shape[0], generator=g), dim=1)
    clu = clutter_score(feats, mix)
    b, _, h, w = feats.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                best = max(float(torch.dot(feats[i, :, y, x], m)) for m in mix)
                assert abs(float(clu[i, y, x]) - best) < 1e-5
    out = feature_likelihood(feats, rendered, orient, mask, mix, robust=True)
    assert torch.allclose(out.clu, clu)
    # more clutter directions never score a pixel lower, so they explain more of it as clutter
    sub = feature_likelihood(feats, rendered, orient, mask, mix[:1], robust=True)
    assert (out.clu >= sub.clu - 1e-6).all()
    assert out.occluded.sum() >= sub.occluded.sum()
    with pytest.raises(ValueError, match="clutter"):
        feature_likelihood(feats, rendered, orient, mask, mix[:, :3])
    with pytest.raises(ValueError, match="clutter"):
        feature_likelihood(feats, rendered, orient, mask, mix[None])
