import numpy as np
import pytest
import torch

from engines.body import BodyModel
from engines.synth.appearance import (
    BOTTOM,
    HAIR,
    SHOES,
    SKIN,
    TOP,
    Texture,
    apply_front_details,
    garment_groups,
    sample_appearance,
    sample_front_details,
    sample_texture_id,
    shade,
    texture_split,
)


def test_texture_bank_split_is_disjoint():
    rng = np.random.default_rng(0)
    train = {sample_texture_id(rng, "train") for _ in range(2000)}
    held = {sample_texture_id(rng, "heldout") for _ in range(2000)}
    assert not train & held
    assert all(texture_split(t) == "train" for t in train)
    assert all(texture_split(t) == "heldout" for t in held)
    with pytest.raises(ValueError, match="split"):
        sample_texture_id(rng, "val")


def test_texture_is_a_function_of_its_id():
    a, b = Texture.from_id(12345), Texture.from_id(12345)
    p = torch.rand(100, 3, dtype=torch.float64)
    torch.testing.assert_close(a.evaluate(p), b.evaluate(p))
    patterns = {Texture.from_id(i).pattern for i in range(200)}
    assert patterns == {"plain", "stripes", "checks", "plaid", "noise"}


def test_patterns_vary_at_their_period():
    for i in range(60):
        t = Texture.from_id(i)
        if t.pattern == "plain" or np.allclose(t.colour_a, t.colour_b, atol=0.05):
            continue
        p = torch.rand(2000, 3, dtype=torch.float64) * 0.5
        c = t.evaluate(p)
        assert c.min() >= -1e-9 and c.max() <= 1 + 1e-9
        assert c.std(0).max() > 0.2 * np.abs(t.colour_a - t.colour_b).max(), t.pattern


@pytest.fixture(scope="module")
def body():
    return BodyModel.default()


def test_garment_groups_follow_the_layout(body):
    part = body.weights.argmax(1)
    rng = np.random.default_rng(1)
    app = sample_appearance(rng, "train")
    long = app.__class__(**{**app.__dict__, "sleeve": 1.0, "trouser": 1.0, "hair": 0.8})
    g = garment_groups(body.v_template, body.J_template, part, long)
    counts = torch.bincount(g, minlength=5)
    assert all(counts[i] > 50 for i in (SKIN, HAIR, TOP, BOTTOM, SHOES))
    hands = torch.isin(part, torch.tensor([22, 23]))
    assert (g[hands] == SKIN).float().mean() > 0.9
    feet = torch.isin(part, torch.tensor([10, 11]))
    assert (g[feet] == SHOES).float().mean() > 0.9
    spine = torch.isin(part, torch.tensor([6, 9]))
    assert (g[spine] == TOP).float().mean() > 0.9
    knees = torch.isin(part, torch.tensor([4, 5]))
    assert (g[knees] == BOTTOM).float().mean() > 0.8
    bare = app.__class__(**{**app.__dict__, "sleeve": 0.0, "trouser": 0.35, "hair": 0.0})
    g2 = garment_groups(body.v_template, body.J_template, part, bare)
    forearm = torch.isin(part, torch.tensor([18, 19]))
    assert (g2[forearm] == SKIN).float().mean() > 0.9
    assert (g2 == HAIR).sum() == 0


def test_shading_lambert():
    app = sample_appearance(np.random.default_rng(2), "heldout")
    alb = torch.full((3, 3), 0.5)
    L = torch.as_tensor(app.key_dir, dtype=torch.float32)
    n = torch.stack([L, -L, torch.tensor([0.0, 0.0, -1.0])])
    out = shade(alb, n, app)
    # facing the key light is brighter than ambient-only (n = -L is flipped to face the camera
    # only when it points away from it)
    assert (out[0] >= out[1] - 1e-6).all()
    assert out.min() >= 0 and out.max() <= 1


def _all_details(app):
    """``app`` with every front detail switched on (V neck, box print, placket, toe caps)."""
    d = app.details
    d = d.__class__(**{
        **d.__dict__, "neckline": "v", "neck_depth": 0.12, "print_kind": "box",
        "print_centre": (0.0, 0.25), "print_size": 0.06, "print_colour": np.array([1.0, 0, 0]),
        "placket": 0.03, "placket_colour": np.array([0, 1.0, 0]), "toe_cap": True,
        "toe_colour": np.array([0, 0, 1.0]), "eye_colour": np.array([0.05, 0.05, 0.05]),
    })  # fmt: skip
    return app.__class__(**{**app.__dict__, "sleeve": 1.0, "trouser": 1.0, "hair": 0.0,
                            "details": d})  # fmt: skip


def test_front_details_are_on_the_front_only(body):
    """Painted on the rest mesh: every detail appears, and only where the surface faces forward
    (+z), so a body and its front/back flip no longer look alike."""
    from engines.synth.raster import vertex_normals

    part = body.weights.argmax(1)
    v, J = body.v_template, body.J_template
    app = _all_details(sample_appearance(np.random.default_rng(3), "train"))
    g = garment_groups(v, J, part, app)
    normals = vertex_normals(v, body.faces)
    base = torch.full((len(v), 3), 0.5)
    out = apply_front_details(base, v, normals, g, part, J, app)
    changed = (out - base).abs().amax(1) > 1e-6
    assert changed.sum() > 100
    feet = torch.isin(part, torch.tensor([10, 11]))
    # everything but the toe caps sits on forward-facing surface, the toe caps at the toes' front
    assert (normals[changed & ~feet, 2] > 0.2).all()
    assert (v[changed & feet, 2] > J[10, 2]).all()
    back = normals[:, 2] < -0.2
    assert not changed[back].any()
    for colour in ([1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0.05, 0.05, 0.05]):
        hit = (out - torch.tensor(colour)).abs().amax(1) < 1e-6
        assert hit.sum() >= 3, colour
    skin = torch.as_tensor(app.skin, dtype=torch.float32)
    neck = (g == TOP) & ((out - skin).abs().amax(1) < 1e-6)
    assert neck.sum() > 5 and (v[neck, 1] > J[12, 1] - 0.13).all()


def test_front_details_follow_the_textures_and_leave_the_stream_alone(monkeypatch):
    """Details are drawn from a stream keyed by the garment textures: the same textures give
    the same details, and drawing them does not move the caller's stream (the rest of a sample,
    its background, occluders and camera, is what it was without them)."""
    import engines.synth.appearance as appearance

    a = sample_appearance(np.random.default_rng(5), "heldout")
    again = sample_front_details(np.random.default_rng([104729, *(t.id for t in a.textures)]))
    assert again.neckline == a.details.neckline and again.print_kind == a.details.print_kind
    np.testing.assert_array_equal(again.print_colour, a.details.print_colour)
    r1 = np.random.default_rng(9)
    sample_appearance(r1, "train")
    real = appearance.sample_front_details

    def greedy(rng):  # draws far more: would move the caller's stream if it were that one
        rng.random(1000)
        return real(rng)

    monkeypatch.setattr(appearance, "sample_front_details", greedy)
    r2 = np.random.default_rng(9)
    sample_appearance(r2, "train")
    assert r1.bit_generator.state == r2.bit_generator.state
