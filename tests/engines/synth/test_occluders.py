import cv2
import numpy as np
import pytest

from engines.synth.backgrounds import BackgroundBank
from engines.synth.occluders import advocc_positions, apply_occluder, random_occluder, square_patch


def _silhouette(S: int = 128) -> np.ndarray:
    """A body-like silhouette: torso, head, two thin arms, two legs."""
    m = np.zeros((S, S), bool)
    m[30:80, 50:78] = True  # torso
    m[12:30, 56:72] = True  # head
    m[32:38, 20:50] = True  # arms
    m[32:38, 78:108] = True
    m[80:122, 52:62] = True  # legs
    m[80:122, 66:76] = True
    return m


@pytest.mark.parametrize("kind", ["rect", "ellipse", "blob"])
def test_random_occluder_coverage_in_range(kind):
    sil = _silhouette()
    bank = BackgroundBank("train")
    covs = []
    for s in range(25):
        occ = random_occluder(np.random.default_rng(s), sil, (0.1, 0.4), bank, kinds=(kind,))
        real = (occ.mask & sil).sum() / sil.sum()
        assert occ.coverage == pytest.approx(real)
        covs.append(real)
        assert occ.rgb.shape == (128, 128, 3) and occ.rgb.dtype == np.uint8
    covs = np.array(covs)
    assert ((covs >= 0.1) & (covs <= 0.4)).mean() >= 0.95, covs
    assert covs.std() > 0.03  # the target fraction varies


def test_square_patch():
    img = np.zeros((100, 100, 3), np.uint8)
    tex = np.full((40, 40, 3), 200, np.uint8)
    tex[0, 0] = 7
    out, m = square_patch(img, 10, 20, 40, tex)
    assert m.sum() == 1600 and m[20:60, 10:50].all()
    assert out[20, 10, 0] == 7 and out[59, 49, 0] == 200 and out[19, 10, 0] == 0
    assert img.max() == 0  # input untouched
    out, m = square_patch(img, 80, -10, 40, tex)  # partly outside
    assert m.sum() == 20 * 30 and out[0, 80, 0] == 200
    out, m = square_patch(img, 200, 200, 40)
    assert not m.any()


def test_apply_occluder_replaces_pixels():
    sil = _silhouette()
    occ = random_occluder(np.random.default_rng(0), sil)
    img = np.zeros((128, 128, 3), np.uint8)
    out = apply_occluder(img, occ)
    inner = cv2.erode(occ.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    assert inner.any()
    np.testing.assert_allclose(out[inner], occ.rgb[inner], atol=1)
    assert (out[~occ.mask] <= 255).all()


def test_empty_silhouette_rejected():
    with pytest.raises(ValueError, match="empty"):
        random_occluder(np.random.default_rng(0), np.zeros((8, 8), bool))


def test_advocc_grid():
    side, pos = advocc_positions(224, 40)
    assert side == 40 and len(pos) == 400 and pos[1] == (10, 0)
    side, pos = advocc_positions(224, 80)
    assert len(pos) == 256
    side, pos = advocc_positions(320, 80)
    assert side == 114 and pos[1] == (14, 0) and len(pos) == 256
