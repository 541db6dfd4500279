"""Linear blend skinning for SMPL-format body models (pure functions, no module state).

Geometry conventions: docs/conventions.md (y up, faces +z, axis-angle local to the parent,
column vectors, ``G_j = G_parent(j) @ R_j``). The maths is SMPL's (and ``smplx.lbs.lbs``):

    v_shaped = v_template + shapedirs . betas
    J        = J_regressor @ v_shaped
    v_posed  = v_shaped + posedirs . (R[1:] - I)
    v        = sum_j w_vj * A_j @ [v_posed; 1]

``lbs`` can skin only a subset of the vertices (``vertex_ids``); the joints still come from the
full shaped template (through the regressor, or a precomputed joint basis, which is the same
linear map contracted once).
"""

from __future__ import annotations

import functools
import logging
from typing import NamedTuple

import torch

from engines.rotations import axis_angle_to_matrix

__all__ = [
    "LBSOutput",
    "batch_rigid_transform",
    "blend_shapes",
    "joint_basis",
    "kinematic_chain",
    "lbs",
    "shaped_joints",
]


class LBSOutput(NamedTuple):
    vertices: torch.Tensor  # [B, V, 3] (or [B, len(vertex_ids), 3])
    joints: torch.Tensor  # [B, J, 3] posed joints
    joint_transforms: torch.Tensor  # [B, J, 4, 4] global joint transforms G_j (rest -> posed)
    skinning_transforms: torch.Tensor  # [B, J, 4, 4] G_j with the rest joint removed


def _check(name: str, t: torch.Tensor, shape: tuple, expected: str) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {expected}, got {type(t)}")
    if t.dim() != len(shape) or any(
        s is not None and s != d for s, d in zip(shape, t.shape, strict=True)
    ):
        raise ValueError(f"{name} must have shape {expected}, got {tuple(t.shape)}")


def blend_shapes(
    betas: torch.Tensor,  # [B, N]
    shapedirs: torch.Tensor,  # [V, 3, N]
) -> torch.Tensor:  # [B, V, 3]
    """Shape displacements ``sum_n betas[b, n] * shapedirs[v, :, n]``."""
    _check("betas", betas, (None, None), "[B, N]")
    _check("shapedirs", shapedirs, (None, 3, betas.shape[1]), f"[V, 3, {betas.shape[1]}]")
    return torch.einsum("bn,vcn->bvc", betas, shapedirs)


def joint_basis(
    J_regressor: torch.Tensor,  # [J, V]
    v_template: torch.Tensor,  # [V, 3]
    shapedirs: torch.Tensor,  # [V, 3, N]
) -> tuple[torch.Tensor, torch.Tensor]:  # ([J, 3], [J, 3, N])
    """Contract the regressor with the template and shape basis once: joints are then
    ``J_template + J_shapedirs . betas`` (identical to ``J_regressor @ v_shaped``)."""
    _check("J_regressor", J_regressor, (None, v_template.shape[0]), "[J, V]")
    J_template = J_regressor @ v_template  # [J, 3]
    J_shapedirs = torch.einsum("jv,vcn->jcn", J_regressor, shapedirs)  # [J, 3, N]
    return J_template, J_shapedirs


def shaped_joints(
    betas: torch.Tensor,  # [B, N]
    J_template: torch.Tensor,  # [J, 3]
    J_shapedirs: torch.Tensor,  # [J, 3, N]
) -> torch.Tensor:  # [B, J, 3]
    """Rest-pose joints of the shaped body from a precomputed joint basis (see ``joint_basis``)."""
    return J_template[None] + blend_shapes(betas, J_shapedirs)


_log = logging.getLogger(__name__)


@functools.cache
def fk_extension():
    """The compiled kinematic-chain op (engines/csrc/fk_chain.cpp), built on first use;
    ``None`` (with a warning) where it cannot be built (no g++ or ninja)."""
    from engines.cext import load_extension

    try:
        return load_extension("nbfstream_fk_chain", ["fk_chain.cpp"], False,
                              "the torch kinematic chain works without it")  # fmt: skip
    except RuntimeError as e:  # pragma: no cover - depends on the toolchain
        _log.warning("fast forward kinematics unavailable: %s", e)
        return None


class _FKChain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, local: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
        ext = fk_extension()
        G = ext.forward(local, parents)
        ctx.save_for_backward(local, G, parents)
        return G

    @staticmethod
    def backward(ctx, grad_G: torch.Tensor):
        local, G, parents = ctx.saved_tensors
        return fk_extension().backward(grad_G, local, G, parents), None


def kinematic_chain(
    local: torch.Tensor,  # [B, J, 4, 4] local transforms
    parents: torch.Tensor,  # [J] long, parents[0] = -1, parents[j] < j
    impl: str = "auto",  # "reference" (torch loop) | "fast" (C++ op) | "auto"
) -> torch.Tensor:  # -> [B, J, 4, 4]
    """``G_0 = L_0``, ``G_j = G_parent(j) @ L_j``. ``auto`` takes the C++ op for CPU float
    tensors when it builds, else the reference loop (same values and gradients; tested)."""
    if impl not in ("auto", "reference", "fast"):
        raise ValueError(f"impl must be auto, reference or fast, got {impl!r}")
    cpu_float = local.device.type == "cpu" and local.dtype in (torch.float32, torch.float64)
    if impl == "fast" or (impl == "auto" and cpu_float and fk_extension() is not None):
        if not cpu_float:
            raise ValueError("the fast kinematic chain needs CPU float32/float64 tensors")
        if fk_extension() is None:
            raise RuntimeError("the fast kinematic chain could not be built (needs g++, ninja)")
        return _FKChain.apply(local.contiguous(), parents.to(local.device, torch.long))
    par = parents.tolist()
    chain = [local[:, 0]]
    for j in range(1, local.shape[1]):
        chain.append(chain[par[j]] @ local[:, j])
    return torch.stack(chain, dim=1)


def batch_rigid_transform(
    rot_mats: torch.Tensor,  # [B, J, 3, 3] local rotations
    joints: torch.Tensor,  # [B, J, 3] rest joints
    parents: torch.Tensor,  # [J] long, parents[0] = -1, parents[j] < j
    impl: str = "auto",  # kinematic_chain implementation
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # ([B,J,3], [B,J,4,4], [B,J,4,4])
    """Forward kinematics along the tree.

    Returns ``(posed_joints, G, A)``: ``G_j`` maps joint j's rest frame (origin at the rest joint)
    to the posed world, ``A_j = G_j`` composed with a translation by ``-joint_j`` (the skinning
    transform applied to rest-pose vertices).
    """
    _check("rot_mats", rot_mats, (None, None, 3, 3), "[B, J, 3, 3]")
    B, J = rot_mats.shape[:2]
    _check("joints", joints, (B, J, 3), f"[{B}, {J}, 3]")
    _check("parents", parents, (J,), f"[{J}]")
    par = parents.tolist()
    rel = torch.cat([joints[:, :1], joints[:, 1:] - joints[:, par[1:]]], dim=1)  # [B, J, 3]
    top = torch.cat([rot_mats, rel[..., None]], dim=-1)  # [B, J, 3, 4]
    bottom = rot_mats.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(B, J, 1, 4)
    local = torch.cat([top, bottom], dim=-2)  # [B, J, 4, 4]
    G = kinematic_chain(local, parents, impl)  # [B, J, 4, 4]
    posed_joints = G[:, :, :3, 3]
    t = posed_joints - (G[:, :, :3, :3] @ joints[..., None])[..., 0]
    A = torch.cat([torch.cat([G[:, :, :3, :3], t[..., None]], dim=-1), G[:, :, 3:]], dim=-2)
    return posed_joints, G, A


def lbs(
    betas: torch.Tensor,  # [B, N]
    pose: torch.Tensor,  # [B, J*3] axis-angle, or [B, J, 3, 3] if pose2rot=False
    v_template: torch.Tensor,  # [V, 3]
    shapedirs: torch.Tensor,  # [V, 3, N]
    posedirs: torch.Tensor | None,  # [P, V*3] (P = (J-1)*9) or None (no pose correctives)
    J_regressor: torch.Tensor | None,  # [J, V] or None when joint_basis_ is given
    parents: torch.Tensor,  # [J] long
    weights: torch.Tensor,  # [V, J]
    vertex_ids: torch.Tensor | None = None,  # [N] long: skin only these vertices
    pose2rot: bool = True,
    joint_basis_: tuple[torch.Tensor, torch.Tensor] | None = None,  # ([J,3], [J,3,N])
) -> LBSOutput:
    """SMPL linear blend skinning; equal to ``smplx.lbs.lbs`` when ``vertex_ids`` is None.

    With ``vertex_ids`` only those vertices are shaped, pose-corrected and skinned (joints still
    come from the full shaped template). ``joint_basis_`` (from ``joint_basis``) replaces the
    regressor product by its precontracted, cheaper form.
    """
    _check("betas", betas, (None, None), "[B, N]")
    B, N = betas.shape
    V = v_template.shape[0]
    _check("v_template", v_template, (V, 3), "[V, 3]")
    _check("shapedirs", shapedirs, (V, 3, N), f"[{V}, 3, {N}]")
    J = parents.shape[0]
    _check("weights", weights, (V, J), f"[{V}, {J}]")
    if pose2rot:
        _check("pose", pose, (B, J * 3), f"[{B}, {J * 3}]")
        rot_mats = axis_angle_to_matrix(pose.reshape(B, J, 3))
    else:
        _check("pose", pose, (B, J, 3, 3), f"[{B}, {J}, 3, 3]")
        rot_mats = pose

    if joint_basis_ is not None:
        joints_rest = shaped_joints(betas, *joint_basis_)
    else:
        if J_regressor is None:
            raise ValueError("J_regressor [J, V] is required when joint_basis_ is not given")
        _check("J_regressor", J_regressor, (J, V), f"[{J}, {V}]")
        v_shaped_full = v_template[None] + blend_shapes(betas, shapedirs)
        joints_rest = torch.einsum("jv,bvc->bjc", J_regressor, v_shaped_full)

    if vertex_ids is not None:
        if vertex_ids.dim() != 1 or vertex_ids.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"vertex_ids must be a 1-D integer tensor [N], got {vertex_ids.dtype}")
        ids = vertex_ids.long()
        v_t, s_d, w = (x.index_select(0, ids) for x in (v_template, shapedirs, weights))
    else:
        v_t, s_d, w = v_template, shapedirs, weights
    v_posed = v_t[None] + blend_shapes(betas, s_d)  # [B, n, 3]

    if posedirs is not None:
        P = (J - 1) * 9
        _check("posedirs", posedirs, (P, V * 3), f"[{P}, {V * 3}]")
        eye = torch.eye(3, dtype=rot_mats.dtype, device=rot_mats.device)
        pose_feature = (rot_mats[:, 1:] - eye).reshape(B, P)
        pd = posedirs.reshape(P, V, 3)
        if vertex_ids is not None:
            pd = pd.index_select(1, vertex_ids.long())
        v_posed = v_posed + torch.einsum("bp,pvc->bvc", pose_feature, pd)

    posed_joints, G, A = batch_rigid_transform(rot_mats, joints_rest, parents)
    T = torch.einsum("vj,bjrc->bvrc", w, A[:, :, :3, :])  # [B, n, 3, 4]
    verts = (T[..., :3] @ v_posed[..., None])[..., 0] + T[..., 3]
    return LBSOutput(verts, posed_joints, G, A)
