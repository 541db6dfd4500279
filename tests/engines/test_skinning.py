"""engines.skinning against smplx.lbs on the same arrays (float64)."""

import pytest
import torch
from smplx.lbs import lbs as smplx_lbs

from engines.skinning import batch_rigid_transform, blend_shapes, joint_basis, lbs

PARENTS = torch.tensor(
    [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
)


def _random_model(V=300, N=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    v_template = torch.randn(V, 3, generator=g, dtype=d)
    shapedirs = 0.05 * torch.randn(V, 3, N, generator=g, dtype=d)
    posedirs = 0.01 * torch.randn(23 * 9, V * 3, generator=g, dtype=d)
    J_reg = torch.rand(24, V, generator=g, dtype=d)
    J_reg = J_reg / J_reg.sum(1, keepdim=True)
    w = torch.rand(V, 24, generator=g, dtype=d) ** 4
    w = w / w.sum(1, keepdim=True)
    return v_template, shapedirs, posedirs, J_reg, w, g


@pytest.mark.parametrize("use_posedirs", [True, False])
def test_lbs_matches_smplx(use_posedirs):
    v_t, sd, pd, J_reg, w, g = _random_model()
    B = 4
    betas = torch.randn(B, 10, generator=g, dtype=torch.float64)
    pose = 0.6 * torch.randn(B, 72, generator=g, dtype=torch.float64)
    pd_ref = pd if use_posedirs else torch.zeros_like(pd)
    v_ref, j_ref = smplx_lbs(betas, pose, v_t, sd, pd_ref, J_reg, PARENTS, w)
    out = lbs(betas, pose, v_t, sd, pd if use_posedirs else None, J_reg, PARENTS, w)
    # smplx's Rodrigues adds 1e-8 to every rotation vector, hence the ~1e-8 tolerance.
    torch.testing.assert_close(out.vertices, v_ref, rtol=0, atol=1e-7)
    torch.testing.assert_close(out.joints, j_ref, rtol=0, atol=1e-7)
    # Precontracted joint basis gives the same result.
    out2 = lbs(
        betas, pose, v_t, sd, pd_ref, None, PARENTS, w, joint_basis_=joint_basis(J_reg, v_t, sd)
    )
    torch.testing.assert_close(out2.vertices, out.vertices, rtol=1e-12, atol=1e-12)


def test_lbs_vertex_subset_equals_full():
    v_t, sd, pd, J_reg, w, g = _random_model(seed=1)
    betas = torch.randn(3, 10, generator=g, dtype=torch.float64)
    pose = 0.5 * torch.randn(3, 72, generator=g, dtype=torch.float64)
    ids = torch.tensor([5, 0, 17, 299, 42, 42])
    full = lbs(betas, pose, v_t, sd, pd, J_reg, PARENTS, w)
    sub = lbs(betas, pose, v_t, sd, pd, J_reg, PARENTS, w, vertex_ids=ids)
    torch.testing.assert_close(sub.vertices, full.vertices[:, ids], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(sub.joints, full.joints)


def test_rigid_transform_maps_rest_joints_to_posed():
    g = torch.Generator().manual_seed(2)
    from engines.rotations import axis_angle_to_matrix

    R = axis_angle_to_matrix(torch.randn(2, 24, 3, generator=g, dtype=torch.float64))
    J = torch.randn(2, 24, 3, generator=g, dtype=torch.float64)
    posed, G, A = batch_rigid_transform(R, J, PARENTS)
    # A applied to a rest joint gives the posed joint; G's translation is the posed joint.
    hom = torch.cat([J, torch.ones(2, 24, 1, dtype=J.dtype)], -1)
    torch.testing.assert_close((A @ hom[..., None])[..., :3, 0], posed)
    torch.testing.assert_close(G[:, :, :3, 3], posed)
    # Bone lengths are preserved.
    bl = lambda X: (X[:, 1:] - X[:, PARENTS[1:]]).norm(dim=-1)  # noqa: E731
    torch.testing.assert_close(bl(posed), bl(J))


def test_gradients_flow_and_shape_errors():
    v_t, sd, _, J_reg, w, g = _random_model(V=50)
    betas = torch.zeros(1, 10, dtype=torch.float64, requires_grad=True)
    pose = (0.3 * torch.randn(1, 72, generator=g, dtype=torch.float64)).requires_grad_()
    out = lbs(betas, pose, v_t, sd, None, J_reg, PARENTS, w)
    out.vertices.sum().backward()
    assert torch.isfinite(pose.grad).all() and pose.grad.abs().sum() > 0
    assert betas.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="pose"):
        lbs(betas, pose[:, :69], v_t, sd, None, J_reg, PARENTS, w)
    with pytest.raises(ValueError, match="shapedirs"):
        blend_shapes(betas, sd[..., :5])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_kinematic_chain_matches_reference(dtype):
    from engines.body import BodyModel
    from engines.skinning import kinematic_chain

    parents = BodyModel.default().parents
    g = torch.Generator().manual_seed(0)
    local = torch.randn(3, 24, 4, 4, generator=g, dtype=dtype).requires_grad_(True)
    fast = kinematic_chain(local, parents, "fast")
    ref = kinematic_chain(local, parents, "reference")
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(fast, ref, rtol=tol, atol=tol)
    w = torch.randn(fast.shape, generator=g, dtype=dtype)
    (gf,) = torch.autograd.grad((fast * w).sum(), local)
    (gr,) = torch.autograd.grad((ref * w).sum(), local)
    torch.testing.assert_close(gf, gr, rtol=tol, atol=tol)
    if dtype == torch.float64:
        x = local[:1].detach().clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda t: kinematic_chain(t, parents, "fast"), (x,))
    with pytest.raises(ValueError, match="impl"):
        kinematic_chain(local, parents, "gpu")
    bad = parents.clone()
    bad[3] = 5  # a parent after its child
    with pytest.raises(RuntimeError, match="parents"):
        kinematic_chain(local, bad, "fast")
