import numpy as np
import pytest

from engines.synth.backgrounds import (
    REAL_IMAGES,
    SHIPPED_DIR,
    BackgroundBank,
    procedural_background,
)


def test_real_image_split_disjoint_and_shipped_present():
    train = BackgroundBank("train")
    held = BackgroundBank("heldout")
    assert len(train) >= 5 and len(held) >= 3
    assert not set(train.names) & set(held.names)
    assert all(REAL_IMAGES[n] == "train" for n in train.names)
    shipped = sorted(p.name for p in SHIPPED_DIR.glob("*.jpg"))
    assert shipped and all(n in REAL_IMAGES for n in shipped)
    # near-duplicate pairs share a split
    for a, b in (("aloeL.jpg", "aloeR.jpg"), ("leuvenA.jpg", "leuvenB.jpg"),
                 ("graf1.png", "graf3.png"), ("rubberwhale1.png", "rubberwhale2.png")):  # fmt: skip
        assert REAL_IMAGES[a] == REAL_IMAGES[b]


def test_sampling_is_deterministic_and_sized():
    bank = BackgroundBank("train")
    a = bank.sample(np.random.default_rng(5), 96)
    b = bank.sample(np.random.default_rng(5), 96)
    assert a.shape == (96, 96, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    p = procedural_background(np.random.default_rng(1), 64)
    np.testing.assert_array_equal(p, procedural_background(np.random.default_rng(1), 64))
    assert p.std() > 1.0


def test_missing_images_fall_back_to_procedural_with_warning(tmp_path):
    bank = BackgroundBank("heldout", dirs=(tmp_path,))
    assert len(bank) == 0
    with pytest.warns(UserWarning, match="procedural"):
        imgs = [bank.sample(np.random.default_rng(s), 32, real_prob=1.0) for s in range(3)]
    assert all(i.shape == (32, 32, 3) for i in imgs)


def test_bad_split():
    with pytest.raises(ValueError, match="split"):
        BackgroundBank("val")
