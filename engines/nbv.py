"""Neural Body Volume structure: kernel vertices, their 1-ring adjacency, limbs, orientation bins.

The NBV places K Gaussian kernels at a subset of body-mesh vertices (farthest-point sampling on
the rest mesh: uniform over the surface, deterministic), posed by the body model's own skinning
of just those vertices. Each kernel belongs to one of the 9 limbs of docs/conventions.md (the
limb of its dominant skinning joint); each limb's direction in camera coordinates selects the
kernel's orientation bin:

- ``"code3"`` (released code): z = depth component of the unit limb direction; hard bins
  0: |z| <= 0.3, 1: z > 0.3, 2: z < -0.3; soft weights w0 = s(10(z+0.3)) + s(10(0.3-z)) - 1,
  w1 = s(10(z-0.3)), w2 = s(10(-z-0.3)) (s = sigmoid; they sum to 1).
- ``"paper"`` (paper, O = 4 by default): the limb's projection p = (d_y, d_z) on the camera y-z
  plane, angle measured from +y towards +z; bin i is centred at 2 pi i / O (so for O = 4:
  0 = +y (down in the image), 1 = +z (away), 2 = -y (up), 3 = -z (towards the camera)); hard
  label = nearest centre; soft weights = von Mises: softmax_i(kappa * p . u_i), which tends to
  uniform when the limb points along the camera x axis (|p| -> 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import torch
from torch import nn

from engines.body import JOINT_NAMES, BodyModel

__all__ = [
    "JOINT_TO_LIMB",
    "LIMB_DIRECTIONS",
    "LIMB_NAMES",
    "NBVConfig",
    "NeuralBodyVolume",
    "farthest_point_sampling",
    "kernel_adjacency",
]

LIMB_NAMES: tuple[str, ...] = (
    "torso", "left_upper_arm", "left_lower_arm", "right_upper_arm", "right_lower_arm",
    "left_thigh", "left_calf", "right_thigh", "right_calf",
)  # fmt: skip
_J = {n: i for i, n in enumerate(JOINT_NAMES)}
JOINT_TO_LIMB: tuple[int, ...] = tuple(
    {
        "left_shoulder": 1, "left_elbow": 2, "left_wrist": 2, "left_hand": 2,
        "right_shoulder": 3, "right_elbow": 4, "right_wrist": 4, "right_hand": 4,
        "left_hip": 5, "left_knee": 6, "left_ankle": 6, "left_foot": 6,
        "right_hip": 7, "right_knee": 8, "right_ankle": 8, "right_foot": 8,
    }.get(n, 0)
    for n in JOINT_NAMES
)  # fmt: skip
# Limb direction: mean of the start joints -> mean of the end joints.
LIMB_DIRECTIONS: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    ((_J["left_hip"], _J["right_hip"]), (_J["neck"],)),
    ((_J["left_shoulder"],), (_J["left_elbow"],)),
    ((_J["left_elbow"],), (_J["left_wrist"],)),
    ((_J["right_shoulder"],), (_J["right_elbow"],)),
    ((_J["right_elbow"],), (_J["right_wrist"],)),
    ((_J["left_hip"],), (_J["left_knee"],)),
    ((_J["left_knee"],), (_J["left_ankle"],)),
    ((_J["right_hip"],), (_J["right_knee"],)),
    ((_J["right_knee"],), (_J["right_ankle"],)),
)


@dataclass(frozen=True)
class NBVConfig:
    """NBV structure settings. ``orientation``: "code3" (3 bins on z) or "paper" (``num_bins``
    sectors of the y-z angle, soft weights with von Mises concentration ``kappa``)."""

    num_kernels: int = 858
    orientation: str = "code3"
    num_bins: int = 4
    kappa: float = 8.0

    def __post_init__(self) -> None:
        if self.orientation not in ("code3", "paper"):
            raise ValueError(f"orientation must be 'code3' or 'paper', got {self.orientation!r}")
        if self.num_kernels < 4:
            raise ValueError(f"num_kernels must be >= 4, got {self.num_kernels}")
        if self.orientation == "paper" and self.num_bins < 1:
            raise ValueError(f"num_bins must be >= 1, got {self.num_bins}")

    @classmethod
    def from_dict(cls, d: dict) -> NBVConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown NBVConfig keys: {sorted(unknown)}")
        return cls(**d)


def farthest_point_sampling(points: np.ndarray, k: int, start: int) -> np.ndarray:
    """Greedy farthest-point sampling of ``k`` indices of ``points [V, 3]`` from ``start``."""
    if not 1 <= k <= len(points):
        raise ValueError(f"k must be in [1, {len(points)}], got {k}")
    x, y, z = (np.ascontiguousarray(points[:, i], dtype=np.float64) for i in range(3))
    idx = np.empty(k, dtype=np.int64)
    idx[0] = start
    dist = (x - x[start]) ** 2 + (y - y[start]) ** 2 + (z - z[start]) ** 2
    for i in range(1, k):
        nxt = int(dist.argmax())
        idx[i] = nxt
        np.minimum(dist, (x - x[nxt]) ** 2 + (y - y[nxt]) ** 2 + (z - z[nxt]) ** 2, out=dist)
    return idx


def kernel_adjacency(
    vertices: np.ndarray, faces: np.ndarray, kernel_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Geodesic Voronoi regions of the kernels and the 1-ring adjacency of the downsampled mesh.

    Every vertex goes to its nearest kernel along mesh edges (multi-source Dijkstra); two
    kernels are neighbours when their regions share a mesh edge. Returns
    ``(region [V] kernel index, adjacency [K, K] bool, symmetric, no self loops)``.
    """
    V, K = len(vertices), len(kernel_ids)
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    length = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1) + 1e-12
    graph = scipy.sparse.coo_matrix((length, (e[:, 0], e[:, 1])), shape=(V, V)).tocsr()
    _, _, sources = scipy.sparse.csgraph.dijkstra(
        graph, directed=False, indices=kernel_ids, min_only=True, return_predecessors=True
    )
    if (sources < 0).any():
        raise ValueError("some mesh vertices are not connected to any kernel")
    to_kernel = np.full(V, -1, dtype=np.int64)
    to_kernel[kernel_ids] = np.arange(K)
    region = to_kernel[sources]
    a, b = region[e[:, 0]], region[e[:, 1]]
    keep = a != b
    adj = np.zeros((K, K), dtype=bool)
    adj[a[keep], b[keep]] = True
    adj |= adj.T
    return region, adj


class NeuralBodyVolume(nn.Module):
    """Kernel structure of the NBV (buffers only); built from a ``BodyModel``.

    Buffers: ``kernel_ids [K]`` mesh vertex per kernel, ``adjacency [K, K]`` bool 1-ring,
    ``neighbour_index [2, E]`` the same as a directed edge list, ``kernel_limb [K]`` limb index
    (LIMB_NAMES), ``kernel_joint [K]`` dominant skinning joint, ``rest_centres [K, 3]`` kernel
    positions on the mean-shape T-pose, ``vertex_region [V]`` kernel owning each mesh vertex.
    """

    def __init__(self, body_model: BodyModel, config: NBVConfig | None = None) -> None:
        super().__init__()
        cfg = config or NBVConfig()
        self.config = cfg
        verts = body_model.v_template.detach().cpu().double().numpy()
        faces = body_model.faces.cpu().numpy()
        if cfg.num_kernels > len(verts):
            raise ValueError(f"num_kernels {cfg.num_kernels} exceeds the {len(verts)} vertices")
        start = int(np.argmax(verts[:, 1]))  # top of the head: deterministic
        ids = farthest_point_sampling(verts, cfg.num_kernels, start)
        region, adj = kernel_adjacency(verts, faces, ids)
        joint = body_model.weights[torch.as_tensor(ids)].argmax(1)
        limb = torch.tensor(JOINT_TO_LIMB, dtype=torch.long)[joint]
        self.num_vertices = len(verts)
        self.register_buffer("kernel_ids", torch.as_tensor(ids, dtype=torch.long))
        self.register_buffer("adjacency", torch.as_tensor(adj))
        self.register_buffer("neighbour_index", torch.as_tensor(np.stack(np.nonzero(adj))))
        self.register_buffer("kernel_limb", limb)
        self.register_buffer("kernel_joint", joint)
        self.register_buffer("rest_centres", body_model.v_template[torch.as_tensor(ids)].clone())
        self.register_buffer("vertex_region", torch.as_tensor(region))
        starts = torch.zeros(len(LIMB_NAMES), 24)
        ends = torch.zeros(len(LIMB_NAMES), 24)
        for i, (s, e) in enumerate(LIMB_DIRECTIONS):
            starts[i, list(s)] = 1.0 / len(s)
            ends[i, list(e)] = 1.0 / len(e)
        self.register_buffer("limb_matrix", ends - starts)  # [L, 24]: direction = M @ joints
        O = 3 if cfg.orientation == "code3" else cfg.num_bins
        ang = 2 * math.pi * torch.arange(O, dtype=torch.float64) / O
        self.register_buffer("bin_axes", torch.stack([ang.cos(), ang.sin()], 1).float())  # [O,2]

    @property
    def num_kernels(self) -> int:
        return int(self.kernel_ids.shape[0])

    @property
    def num_bins(self) -> int:
        return 3 if self.config.orientation == "code3" else self.config.num_bins

    # --------------------------------------------------------------------------- posing
    def pose(
        self,
        body_model: BodyModel,
        global_orient: torch.Tensor,  # [B, 3]
        body_pose: torch.Tensor,  # [B, 69]
        betas: torch.Tensor,  # [B, N]
        transl: torch.Tensor | None = None,  # [B, 3]
    ) -> tuple[torch.Tensor, torch.Tensor]:  # ([B, K, 3], [B, 24, 3])
        """Kernel centres and joints, skinning only the kernel vertices."""
        if body_model.num_vertices != self.num_vertices:
            raise ValueError(
                f"body_model has {body_model.num_vertices} vertices, this NBV was built for "
                f"{self.num_vertices}"
            )
        out = body_model(global_orient, body_pose, betas, transl, vertex_ids=self.kernel_ids)
        return out.vertices, out.joints

    # ---------------------------------------------------------------------- orientation
    def limb_directions(self, joints: torch.Tensor) -> torch.Tensor:  # [B, 24, 3] -> [B, L, 3]
        """Unit limb directions (docs/conventions.md limb table), in the joints' frame."""
        if not isinstance(joints, torch.Tensor) or joints.dim() != 3 or joints.shape[1:] != (24, 3):
            got = tuple(joints.shape) if isinstance(joints, torch.Tensor) else type(joints)
            raise ValueError(f"joints must have shape [B, 24, 3], got {got}")
        d = torch.einsum("lj,bjc->blc", self.limb_matrix.to(joints.dtype), joints)
        return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-9)

    def limb_weights(self, joints: torch.Tensor) -> torch.Tensor:  # [B, 24, 3] -> [B, L, O]
        """Soft orientation-bin weights per limb (rows sum to 1)."""
        d = self.limb_directions(joints)
        if self.config.orientation == "code3":
            z = d[..., 2]
            s = torch.sigmoid
            w0 = s(10 * (z + 0.3)) + s(10 * (0.3 - z)) - 1
            return torch.stack([w0, s(10 * (z - 0.3)), s(10 * (-z - 0.3))], dim=-1)
        p = d[..., 1:3]  # projection on the camera y-z plane
        logits = self.config.kappa * p @ self.bin_axes.to(d.dtype).T
        return torch.softmax(logits, dim=-1)

    def limb_labels(self, joints: torch.Tensor) -> torch.Tensor:  # [B, 24, 3] -> [B, L] long
        """Hard orientation bin per limb."""
        d = self.limb_directions(joints)
        if self.config.orientation == "code3":
            z = d[..., 2]
            lab = torch.zeros_like(z, dtype=torch.long)
            lab[z > 0.3] = 1
            lab[z < -0.3] = 2
            return lab
        O = self.config.num_bins
        ang = torch.atan2(d[..., 2], d[..., 1])
        return torch.round(ang / (2 * math.pi / O)).long() % O

    def orientation_weights(self, joints: torch.Tensor) -> torch.Tensor:  # -> [B, K, O]
        """Soft orientation-bin weights of every kernel (its limb's), from joints [B, 24, 3]
        in camera coordinates."""
        return self.limb_weights(joints)[:, self.kernel_limb]

    def orientation_labels(self, joints: torch.Tensor) -> torch.Tensor:  # -> [B, K] long
        """Hard orientation bin of every kernel, from joints [B, 24, 3] in camera coordinates."""
        return self.limb_labels(joints)[:, self.kernel_limb]
